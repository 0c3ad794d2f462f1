//! Go `text/template`: [`parse`] turns source into trees, [`exec`] runs them.

pub mod exec;
pub mod parse;
