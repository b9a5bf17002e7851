#![allow(dead_code, unused_imports)]

pub mod admission;
pub mod cluster;
pub mod controller;
pub mod dir_tree;
pub mod git;
pub mod replica;
