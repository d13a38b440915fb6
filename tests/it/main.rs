//! All integration tests, in one binary (as casey/just does): every extra test binary would
//! link burn again. One module per area; `common` holds the shared harness.

mod common;

mod ablate;
mod cli_e2e;
mod cli_ensemble;
mod cli_gc;
mod cli_golden;
mod cli_run;
mod cluster;
mod data_layout;
mod data_relabel;
mod data_split;
mod data_synth;
mod first_hour;
mod hub;
mod lang_api;
mod lang_edge;
mod lang_golden;
mod lang_invariance;
mod lang_roundtrip;
mod metrics_sklearn;
mod model_batchnorm;
mod model_heads;
mod model_params;
mod model_timm;
mod prep_augment;
mod prep_loader;
mod prep_parts;
mod prep_prepare;
mod reliability_bad_data;
mod reliability_concurrency;
mod reliability_corruption;
mod reliability_faults;
mod reliability_keys;
mod reliability_mutate;
mod remote_cache;
mod report_browser;
mod report_cli;
mod report_metrics;
mod report_tensorboard;
mod train_clip;
mod train_loop;
mod train_loss;
mod train_pytorch_parity;
