//! Arrival maths: when the `index`-th agent arrives (open model), or `None` for a burst.

use crate::scenario::{Arrival, Scenario};

/// Seconds from the start at which the `index`-th agent arrives (open model).
#[derive(Clone)]
pub struct Schedule {
    arrival: Arrival,
    rate_per_s: f64,
    /// (duration_s, from_rate, to_rate)
    stages: Vec<(f64, f64, f64)>,
}

impl Schedule {
    pub fn new(s: &Scenario) -> Schedule {
        let mut from = 0.0;
        let stages = s
            .agents
            .stages
            .iter()
            .map(|st| {
                let d = st.duration.as_secs_f64();
                let stage = (d, from, st.rate_per_s);
                from = st.rate_per_s;
                stage
            })
            .collect();
        Schedule {
            arrival: s.agents.arrival,
            rate_per_s: s.agents.rate_per_s,
            stages,
        }
    }

    /// `None` for a burst: agents go as capacity frees.
    pub fn offset_s(&self, index: u64) -> Option<f64> {
        let i = index as f64;
        match self.arrival {
            Arrival::Burst => None,
            Arrival::Rate => Some(i / self.rate_per_s),
            Arrival::Ramp => {
                let mut t = 0.0;
                let mut done = 0.0;
                let mut last_rate = 0.0;
                for &(d, from, to) in &self.stages {
                    let area = d * (from + to) / 2.0;
                    if i < done + area {
                        let x = i - done;
                        let slope = (to - from) / d.max(1e-9);
                        let dt = if slope.abs() < 1e-12 {
                            x / from.max(1e-9)
                        } else {
                            // from*t + slope*t^2/2 = x
                            (-from + (from * from + 2.0 * slope * x).max(0.0).sqrt()) / slope
                        };
                        return Some(t + dt);
                    }
                    done += area;
                    t += d;
                    last_rate = to;
                }
                // After the last stage, keep its rate (or release the rest at once).
                Some(if last_rate > 0.0 {
                    t + (i - done) / last_rate
                } else {
                    t
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::path::Path;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(Path::new("t.toml"), text).expect("scenario")
    }

    #[test]
    fn open_model_schedules() {
        let burst = Schedule::new(&scenario("name = \"b\"\n"));
        assert_eq!(burst.offset_s(5), None);
        let rate = Schedule::new(&scenario(
            "agents = { arrival = \"rate\", rate_per_s = 100.0 }\n",
        ));
        assert_eq!(rate.offset_s(250), Some(2.5));
        // 0 -> 100/s over 10 s is 500 arrivals; then 100/s flat for 5 s is 500 more.
        let ramp = Schedule::new(&scenario(
            "agents = { arrival = \"ramp\", stages = [{ duration = \"10s\", rate_per_s = 100.0 }, { duration = \"5s\", rate_per_s = 100.0 }] }\n",
        ));
        let at = |i| ramp.offset_s(i).expect("ramp");
        assert!((at(500) - 10.0).abs() < 1e-6, "{}", at(500));
        assert!((at(125) - 5.0).abs() < 1e-6, "{}", at(125));
        assert!((at(750) - 12.5).abs() < 1e-6, "{}", at(750));
        assert!(
            (at(1100) - 16.0).abs() < 1e-6,
            "after the stages the last rate holds"
        );
        assert!(at(10) < at(11));
    }
}
