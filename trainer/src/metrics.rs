//! Classification metrics with scikit-learn's definitions: accuracy, per-class precision /
//! recall / F1 / support, macro and weighted F1, the confusion matrix, and a text report.
use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class name.
    pub label: String,
    /// tp / (tp + fp); 0 when the class was never predicted (sklearn's `zero_division=0`).
    pub precision: f64,
    /// tp / (tp + fn); 0 when the class has no true examples.
    pub recall: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
    /// Number of true examples of the class.
    pub support: usize,
}

/// All metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Mean F1 over classes present in the truth or the predictions (sklearn's `average="macro"`).
    pub macro_f1: f64,
    /// Support-weighted mean F1 (sklearn's `average="weighted"`).
    pub weighted_f1: f64,
    /// Per-class metrics in label-id order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][pred]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Number of examples.
    pub n: usize,
}

impl Metrics {
    /// Computes metrics from label ids. Ids at or above `labels.len()` are ignored.
    pub fn compute(y_true: &[usize], y_pred: &[usize], labels: &[String]) -> Metrics {
        let k = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        let mut n = 0usize;
        let mut correct = 0usize;
        for (&t, &p) in y_true.iter().zip(y_pred) {
            if t < k && p < k {
                confusion[t][p] += 1;
                n += 1;
                correct += usize::from(t == p);
            }
        }
        let mut per_class = Vec::with_capacity(k);
        let (mut macro_sum, mut macro_n, mut weighted) = (0.0, 0usize, 0.0);
        for c in 0..k {
            let tp = confusion[c][c] as f64;
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let precision = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            if support > 0 || predicted > 0 {
                macro_sum += f1;
                macro_n += 1;
            }
            weighted += f1 * support as f64;
            per_class.push(ClassMetrics {
                label: labels[c].clone(),
                precision,
                recall,
                f1,
                support,
            });
        }
        let nf = n.max(1) as f64;
        Metrics {
            accuracy: correct as f64 / nf,
            macro_f1: macro_sum / macro_n.max(1) as f64,
            weighted_f1: weighted / nf,
            per_class,
            confusion,
            n,
        }
    }

    /// A report in the layout of sklearn's `classification_report`, then the confusion matrix.
    pub fn report(&self) -> String {
        let w = self
            .per_class
            .iter()
            .map(|c| c.label.len())
            .max()
            .unwrap_or(0)
            .max(12);
        let mut s = format!(
            "{:>w$} {:>9} {:>9} {:>9} {:>9}\n\n",
            "", "precision", "recall", "f1-score", "support"
        );
        for c in &self.per_class {
            s += &format!(
                "{:>w$} {:>9.4} {:>9.4} {:>9.4} {:>9}\n",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        s += &format!(
            "\n{:>w$} {:>9} {:>9} {:>9.4} {:>9}\n",
            "accuracy", "", "", self.accuracy, self.n
        );
        s += &format!(
            "{:>w$} {:>9} {:>9} {:>9.4} {:>9}\n",
            "macro f1", "", "", self.macro_f1, self.n
        );
        s += &format!(
            "{:>w$} {:>9} {:>9} {:>9.4} {:>9}\n\n",
            "weighted f1", "", "", self.weighted_f1, self.n
        );
        s += &confusion_text(
            &self.confusion,
            &self
                .per_class
                .iter()
                .map(|c| c.label.clone())
                .collect::<Vec<_>>(),
        );
        s
    }
}

/// The confusion matrix as text: rows are true labels, columns predicted labels.
pub fn confusion_text(confusion: &[Vec<usize>], labels: &[String]) -> String {
    let w = labels.iter().map(String::len).max().unwrap_or(0).max(6);
    let mut s = format!(
        "confusion matrix (rows: true, columns: predicted)\n{:>w$}",
        ""
    );
    for l in labels {
        s += &format!(" {l:>w$}");
    }
    s.push('\n');
    for (l, row) in labels.iter().zip(confusion) {
        s += &format!("{l:>w$}");
        for v in row {
            s += &format!(" {v:>w$}");
        }
        s.push('\n');
    }
    s
}

/// The most frequent label of `train` (ties: lowest id); the majority-class baseline predicts it.
pub fn majority_label(train: &[usize], num_labels: usize) -> usize {
    let mut counts = vec![0usize; num_labels.max(1)];
    for &y in train {
        if y < counts.len() {
            counts[y] += 1;
        }
    }
    let mut best = 0;
    for (i, &c) in counts.iter().enumerate() {
        if c > counts[best] {
            best = i;
        }
    }
    best
}

/// Row-wise argmax of a `[n, k]` row-major score matrix.
pub fn argmax_rows(scores: &[f32], k: usize) -> Vec<usize> {
    scores
        .chunks(k.max(1))
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn hand_computed_three_classes() {
        // truth: 0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
        let m = Metrics::compute(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], &names(3));
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        // class 0: p=1, r=2/3, f1=0.8 ; class 1: p=1/2, r=1/2, f1=1/2 ; class 2: p=1/2, r=1, f1=2/3
        let f1 = [0.8, 0.5, 2.0 / 3.0];
        for (c, want) in m.per_class.iter().zip(f1) {
            assert!((c.f1 - want).abs() < 1e-12, "{c:?}");
        }
        assert!((m.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[2].precision - 0.5).abs() < 1e-12);
        let weighted = (0.8 * 3.0 + 0.5 * 2.0 + 2.0 / 3.0) / 6.0;
        assert!((m.weighted_f1 - weighted).abs() < 1e-12);
        assert!((m.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(
            m.per_class.iter().map(|c| c.support).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
    }

    #[test]
    fn never_predicted_class_counts_zero() {
        // Majority baseline: everything predicted as 1.
        let m = Metrics::compute(&[0, 1, 1, 1], &[1, 1, 1, 1], &names(3));
        assert_eq!(m.per_class[0].precision, 0.0);
        assert_eq!(m.per_class[0].f1, 0.0);
        // class 1: p = 3/4, r = 1, f1 = 6/7; weighted = 3 * 6/7 / 4
        assert!((m.weighted_f1 - 3.0 * (6.0 / 7.0) / 4.0).abs() < 1e-12);
        // macro over classes 0 and 1 only (class 2 absent from truth and predictions)
        assert!((m.macro_f1 - (6.0 / 7.0) / 2.0).abs() < 1e-12);
        assert_eq!(majority_label(&[0, 1, 1, 2], 3), 1);
    }

    #[test]
    fn report_names_every_class() {
        let m = Metrics::compute(&[0, 1], &[0, 0], &["joy".into(), "sadness".into()]);
        let r = m.report();
        assert!(r.contains("joy") && r.contains("sadness") && r.contains("weighted f1"));
        assert!(r.contains("0.5000"), "{r}");
    }

    #[test]
    fn argmax_per_row() {
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.5, 0.2, -1.0, 3.0], 3), vec![1, 2]);
    }
}
