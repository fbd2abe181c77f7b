//! The resolver: turns the parsed site into the [`ir::Site`] every backend
//! and the simulator read. (The resolver itself lands with the foundation
//! issue; this crate first defines the IR contract.)

pub mod ir;
