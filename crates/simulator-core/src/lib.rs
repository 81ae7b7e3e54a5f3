//! The external validator simulator's rules: the verdict a third-party validator gives an order,
//! and the faults it is told to inject (slow, down, erroring, or failing at random), decided
//! from a seed so that every run can be replayed exactly.

mod faults;
mod rng;
mod verdict;

use rng::SeededRng;

pub use faults::{ConfigError, ConfigUpdate, FaultConfig, Mode, Outcome, ProbeOutcome};
pub use verdict::{RequestedLine, ValidationRequest, Verdict, VerdictError, judge};
