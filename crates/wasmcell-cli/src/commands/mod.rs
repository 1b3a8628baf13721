pub(crate) mod image;
pub(crate) mod run;
