//! edgebert trainer.
