//! Test support (the `test-support` feature): an image store held in
//! memory, a wrapper that injects faults into any store, and builders for
//! small images with real digests, so the engine, the planner and the
//! graph walk can be tested without starting a registry.

pub mod faulty;
pub mod images;
pub mod memory;

pub use faulty::{Fault, Faulty, Op, When};
pub use images::{Blob, Image};
pub use memory::{MemoryStore, Request, Written};
