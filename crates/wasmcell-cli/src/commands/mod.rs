pub(crate) mod cache;
pub(crate) mod image;
pub(crate) mod install;
pub(crate) mod run;
