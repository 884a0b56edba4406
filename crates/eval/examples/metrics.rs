//! Verification metrics from pair scores, as `maskid eval` reports them: ten-fold accuracy
//! (threshold chosen on the other nine folds), AUC, EER and TAR at fixed FARs.
//!
//! ```sh
//! cargo run -p maskid-eval --example metrics
//! ```

use maskid_eval::verification_metrics;

fn main() {
    // 600 pairs: genuine ones score around 0.6, impostors around 0.05, with some overlap.
    let (mut scores, mut genuine, mut folds) = (vec![], vec![], vec![]);
    let mut state = 42u64;
    for i in 0..600 {
        let same = i % 2 == 0;
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let wobble = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.7;
        scores.push(if same { 0.6 + wobble } else { 0.05 + wobble });
        genuine.push(same);
        folds.push((i / 2) % 10); // a genuine and an impostor pair in each fold
    }
    let m = verification_metrics(&scores, &genuine, &folds);
    println!("{} genuine and {} impostor pairs", m.genuine, m.impostor);
    println!(
        "accuracy {:.2}% ± {:.2}, AUC {:.4}, EER {:.2}%",
        100.0 * m.accuracy_mean,
        100.0 * m.accuracy_std,
        m.auc,
        100.0 * m.eer
    );
    for t in &m.tar_at_far {
        match t.tar {
            Some(tar) => println!("TAR at FAR {}: {:.2}%", t.far, 100.0 * tar),
            None => println!("TAR at FAR {}: too few impostor pairs to tell", t.far),
        }
    }
}
