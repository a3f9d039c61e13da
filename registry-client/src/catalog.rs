//! The repository catalog (`GET /v2/_catalog`), following `Link`
//! pagination. Not every registry serves it (Docker Hub does not); those
//! answer with an error the caller reports.

use http::Method;

use crate::auth::Scopes;
use crate::client::{Call, Client};
use crate::error::Error;

impl Client {
    /// Every repository name of a registry (as written in references).
    pub async fn list_repositories(&self, registry: &str) -> Result<Vec<String>, Error> {
        let host = crate::reference::api_host(registry);
        let mut url = self
            .base_url(host)?
            .join("v2/_catalog")
            .expect("static path");
        let mut all = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            #[derive(serde::Deserialize)]
            struct Page {
                #[serde(default)]
                repositories: Option<Vec<String>>,
            }
            let call = Call::new(
                Method::GET,
                url.clone(),
                registry,
                Scopes::new().with("registry", "catalog", &["*"]),
            );
            let (page, next): (Page, _) = self.json_page(call, "catalog").await?;
            all.extend(page.repositories.unwrap_or_default());
            match next {
                // A registry that hands back the same link would loop forever.
                Some(n) if seen.insert(n.to_string()) => url = n,
                _ => return Ok(all),
            }
        }
    }
}
