//! Feature extraction: features cached and reused, metrics written, baseline reported.
mod common;
use common::{synthetic_data, tiny_model_dir, EMOTIONS};
use edgebert_trainer::extract::{extract, ExtractOptions};

#[test]
fn extract_writes_metrics_and_reuses_cache() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tiny_model_dir("tiny-bert", tmp.path());
    let data = synthetic_data(tmp.path(), 120, 40, 5);
    let out = tmp.path().join("out");
    let o = ExtractOptions {
        model: model.display().to_string(),
        data: data.clone(),
        out: out.clone(),
        labels: Some(EMOTIONS.iter().map(|s| s.to_string()).collect()),
        max_len: 16,
        batch_size: 32,
        device: "cpu".into(),
        progress: false,
        ..Default::default()
    };
    let a = extract(&o).expect("extract");
    assert!(!a.features_cached);
    assert!(a.fit_converged, "logistic regression did not converge");
    assert_eq!(a.logistic_regression.metrics.n, 40);
    assert!(a.majority_baseline.accuracy <= 0.5 && a.majority_baseline.accuracy >= 0.0);
    assert!(a.logistic_regression.accuracy >= 0.0 && a.logistic_regression.weighted_f1 <= 1.0);
    for f in [
        "features.safetensors",
        "metrics.json",
        "confusion_matrix.png",
        "confusion_matrix.txt",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let b = extract(&o).expect("extract again");
    assert!(b.features_cached);
    assert_eq!(a.logistic_regression.metrics, b.logistic_regression.metrics);
    // Other data: the cache must not be reused.
    std::fs::write(data.join("validation.txt"), "kalaka;joy\nlolaka;sadness\n").expect("write");
    let c = extract(&o).expect("extract with new data");
    assert!(!c.features_cached);
    assert_eq!(c.logistic_regression.metrics.n, 2);
}
