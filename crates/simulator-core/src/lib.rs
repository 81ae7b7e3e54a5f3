//! The external validator simulator's rules: the verdict a third-party validator gives an
//! order. The faults it is told to inject are every service's, in the `faults` crate.

mod verdict;

pub use verdict::{RequestedLine, ValidationRequest, Verdict, VerdictError, judge};
