//! Statistics of the paired and rotated benchmarks, shared by `benches/throughput/`
//! and the separate package `benches/peers` (which includes this file by path).

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The 95 % bootstrap interval of the median of `ratios`: 2,000 resamples, seeded.
pub fn bootstrap_interval(ratios: &[f64]) -> (f64, f64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            let mut sample: Vec<f64> = (0..ratios.len())
                .map(|_| ratios[rng.random_range(0..ratios.len())])
                .collect();
            median(&mut sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    (medians[50], medians[1949])
}

/// Seconds as µs or ms with about four significant figures.
pub fn human_time(secs: f64) -> String {
    let (value, unit) = if secs < 1e-3 {
        (secs * 1e6, "µs")
    } else {
        (secs * 1e3, "ms")
    };
    let decimals = if value < 10.0 {
        3
    } else if value < 100.0 {
        2
    } else {
        1
    };
    format!("{value:.decimals$} {unit}")
}
