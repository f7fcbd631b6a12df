//! rowferry: online, resumable, throttled copies and backfills of huge SQL
//! tables. See DESIGN.md for the pipeline:
//!
//! spec -> planner -> (bounded queue) -> pool of workers -> checkpoint,
//! with the throttle deciding when each chunk may start.

pub mod checkpoint;
pub mod cli;
pub mod control;
pub mod coordinate;
pub mod db;
pub mod dialect;
pub mod error;
pub mod events;
pub mod job;
pub mod metrics;
pub mod ops;
pub mod planner;
pub mod pool;
pub mod progress;
pub mod signals;
pub mod spec;
pub mod supervisor;
pub mod table;
pub mod throttle;
pub mod url;
