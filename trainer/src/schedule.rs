//! Learning-rate schedule: transformers' `get_linear_schedule_with_warmup` (linear warm-up from
//! 0 to the peak, then linear decay to 0 at the last step).

/// A linear schedule with warm-up over `total` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Total optimizer steps.
    pub total: usize,
}

impl LinearSchedule {
    /// Builds the schedule; warm-up steps are `ceil(warmup_ratio * total)` as in transformers.
    pub fn new(peak: f64, warmup_ratio: f64, total: usize) -> Self {
        let warmup = (warmup_ratio.clamp(0.0, 1.0) * total as f64).ceil() as usize;
        LinearSchedule {
            peak,
            warmup,
            total,
        }
    }

    /// The learning rate for the optimizer step that follows `done` completed steps.
    pub fn lr(&self, done: usize) -> f64 {
        let factor = if done < self.warmup {
            done as f64 / self.warmup.max(1) as f64
        } else {
            let rest = self.total.saturating_sub(done) as f64;
            let span = self.total.saturating_sub(self.warmup).max(1) as f64;
            (rest / span).max(0.0)
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        let s = LinearSchedule::new(1e-3, 0.1, 100);
        assert_eq!(s.warmup, 10);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15);
        assert!((s.lr(55) - 5e-4).abs() < 1e-15);
        assert_eq!(s.lr(100), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        let s = LinearSchedule::new(2e-5, 0.0, 500);
        assert_eq!(s.lr(0), 2e-5);
        assert!((s.lr(250) - 1e-5).abs() < 1e-18);
        assert_eq!(LinearSchedule::new(1.0, 0.01, 150).warmup, 2);
    }
}
