//! edgebert architectures.
