//! `LabPlan`: the complete list of kernel objects a topology becomes.

pub mod types;

pub use types::*;
