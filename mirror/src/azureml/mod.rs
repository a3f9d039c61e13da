//! The AzureML preset: the common-runtime images, the regions their tags
//! name, and the job variables that point the runtime at a mirror.
//!
//! Inside a data-loss-prevention network AzureML compute may pull only from
//! the customer's Azure Container Registry, so the six runtime images are
//! copied there (`{region}-stable` → `stable`) and every job carries
//! `AZUREML_COMPUTE_USE_COMMON_RUNTIME` and
//! `AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE`.

pub mod arm;
pub mod check;
pub mod entra;
pub mod images;
pub mod preset;
pub mod regions;
pub mod server_side;
pub mod variables;
pub mod workspace;
