//! toolhost's end-to-end suite: one binary, a module per area, shared
//! support code in `support/`.

mod model;
mod support;
