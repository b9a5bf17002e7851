#![allow(dead_code)]

pub mod git;
