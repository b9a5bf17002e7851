#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod git;
