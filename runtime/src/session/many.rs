//! Many texts shared between a session's threads: each worker takes the next text, runs it on
//! the session's plans (one copy of the weights: a plan is shared, only its run state is per
//! worker) with run states of its own, one thread per text.
use std::sync::atomic::{AtomicUsize, Ordering};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::SimpleState;

use super::guard::guarded;
use super::plan::{bucket_for, bucket_values, read_logits, InputKind};
use super::{finish_classification, Classification, Session};
use crate::error::{Error, Result};
use crate::tokenizer::{SeqEncoding, Tokenizer};

/// What every worker reads.
struct Shared<'a> {
    tokenizer: &'a Tokenizer,
    labels: &'a [String],
    input_kinds: &'a [InputKind],
    max_len: usize,
    seq_lens: Vec<usize>,
    plans: Vec<Option<Arc<TypedRunnableModel>>>,
}

/// One worker's buffers: its encoding, and per bucket a run state and input tensors.
struct Worker {
    enc: Box<SeqEncoding>,
    states: Vec<Option<TypedSimpleState>>,
    inputs: Vec<Vec<Arc<Tensor>>>,
}

impl Worker {
    fn new(buckets: usize) -> Worker {
        Worker {
            enc: Box::default(),
            states: (0..buckets).map(|_| None).collect(),
            inputs: vec![Vec::new(); buckets],
        }
    }

    fn classify(&mut self, shared: &Shared, text: &str) -> Result<Classification> {
        shared
            .tokenizer
            .encode_into(text, shared.max_len, &mut self.enc)?;
        let n = self.enc.input_ids.len();
        let b = bucket_for(shared.seq_lens.iter().copied(), n);
        let s = shared.seq_lens[b];
        let Some(plan) = &shared.plans[b] else {
            return Err(Error::InvalidArgument(format!("bucket {s} not built")));
        };
        let state = match &mut self.states[b] {
            Some(state) => state,
            empty => empty
                .insert(SimpleState::new(plan).map_err(|e| Error::model("starting a worker", e))?),
        };
        let values = bucket_values(&mut self.inputs[b], shared.input_kinds, s, &self.enc, n)?;
        let outputs = guarded("running the model", || state.run(values))?;
        let mut out = Classification::default();
        read_logits(&outputs, &mut out.logits)?;
        finish_classification(shared.labels, n, self.enc.truncated, &mut out);
        Ok(out)
    }
}

impl Session {
    /// Classifies every text, sharing the texts between the session's threads (each text on
    /// one thread, every thread on the same weights), and returns one result per text, in
    /// order: the values [`Session::classify`] gives each text. For files and streams;
    /// [`Session::classify_into`] is the lowest-latency call for one text.
    ///
    /// With one thread, or one text, the texts are classified one after another.
    pub fn classify_many<S: AsRef<str> + Sync>(
        &mut self,
        texts: &[S],
    ) -> Vec<Result<Classification>> {
        let pool = match &self.pool {
            Some(pool) if texts.len() > 1 => pool.clone(),
            _ => return texts.iter().map(|t| self.classify(t.as_ref())).collect(),
        };
        // The plans these texts need are built first, on this thread; a text whose plan (or
        // encoding) fails has that error for its result.
        let mut failed: Vec<Option<Error>> = Vec::with_capacity(texts.len());
        for text in texts {
            let built = self
                .tokenizer
                .encode_into(text.as_ref(), self.max_len, &mut self.enc)
                .map_err(Error::from)
                .and_then(|()| self.prepare(self.enc.input_ids.len()).map(|_| ()));
            failed.push(built.err());
        }
        let shared = Shared {
            tokenizer: &self.tokenizer,
            labels: &self.header.labels,
            input_kinds: &self.input_kinds,
            max_len: self.max_len,
            seq_lens: self.buckets.iter().map(|b| b.seq_len).collect(),
            plans: self
                .buckets
                .iter()
                .map(|b| b.state.as_ref().map(|s| s.plan().clone()))
                .collect(),
        };
        let next = AtomicUsize::new(0);
        let done: Vec<Vec<(usize, Result<Classification>)>> = pool.broadcast(|_| {
            let mut worker = Worker::new(shared.plans.len());
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(text) = texts.get(i) else {
                    return done;
                };
                if failed[i].is_none() {
                    done.push((i, worker.classify(&shared, text.as_ref())));
                }
            }
        });
        let mut results: Vec<Option<Result<Classification>>> =
            failed.into_iter().map(|e| e.map(Err)).collect();
        for (i, result) in done.into_iter().flatten() {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::InvalidArgument("text not classified".into()))))
            .collect()
    }
}
