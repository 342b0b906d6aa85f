//! HdrHistogram's text percentile distribution (`.hgrm`), as `outputPercentileDistribution`
//! prints it, and the lossless V2 binary form (`.hdr`) that `swarm merge` adds up.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// The percentile distribution of `h` (values in µs), printed in milliseconds.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0;
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                out.push_str(&format!(
                    "{value:12.3} {q:2.12} {total:10} {:14.2}\n",
                    1.0 / (1.0 - q)
                ));
            } else {
                out.push_str(&format!("{value:12.3} {q:2.12} {total:10}\n"));
            }
        }
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n",
        h.mean() / SCALE,
        h.stdev() / SCALE
    ));
    out.push_str(&format!(
        "#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.max() as f64 / SCALE,
        h.len()
    ));
    out.push_str(&format!(
        "#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.buckets(),
        h.distinct_values()
    ));
    out
}

pub fn to_bytes(h: &Histogram<u64>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    Ok(buf)
}

pub fn from_bytes(bytes: &[u8]) -> std::io::Result<Histogram<u64>> {
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| std::io::Error::other(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_ends_with_the_total_and_round_trips() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("h");
        for v in 1..=1000u64 {
            h.record(v * 100).expect("record");
        }
        let text = percentile_distribution(&h);
        assert!(text.starts_with("       Value     Percentile"));
        assert!(text.contains("Total count    =         1000"));
        let last_row = text
            .lines()
            .rev()
            .find(|l| !l.starts_with('#') && !l.trim().is_empty());
        assert!(last_row.is_some_and(|l| l.contains("1.000000000000")));
        let back = from_bytes(&to_bytes(&h).expect("ser")).expect("de");
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
    }
}
