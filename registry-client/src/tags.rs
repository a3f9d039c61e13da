//! Tag listing, following `Link: <…>; rel="next"` pagination.

use http::{header, Method};
use url::Url;

use crate::auth::Scopes;
use crate::client::{Call, Client};
use crate::error::{redact_url, Error};
use crate::limits::{reached, Limits, MAX_LIST_PAGE_BODY as PAGE_LIMIT};
use crate::reference::Repository;

/// One page of tags and where the next one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    /// The tags of this page, in the registry's order (lexical, for
    /// distribution).
    pub tags: Vec<String>,
    /// The next page, from the answer's `Link: <…>; rel="next"`; `None` on
    /// the last page. Pass it to [`Client::tags_page`].
    pub next: Option<Url>,
}

impl Client {
    /// Every tag of a repository, asking `page_size` at a time if given
    /// (`?n=`), following `Link` pages to the end.
    ///
    /// ```no_run
    /// # async fn run(client: registry_client::Client) -> Result<(), registry_client::Error> {
    /// use registry_client::Repository;
    ///
    /// let repo = Repository::parse("ghcr.io/oras-project/oras")?;
    /// for tag in client.list_tags(&repo, Some(100)).await? {
    ///     println!("{tag}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Not found for a repository the registry does not know
    /// ([`ErrorCode::NameUnknown`](crate::ErrorCode::NameUnknown));
    /// [`Error::Exceeded`] for a listing past the
    /// [`Limits`](crate::Limits) (pages or entries); [`Error::Protocol`]
    /// for a page that is not a tag list.
    pub async fn list_tags(
        &self,
        repo: &Repository,
        page_size: Option<usize>,
    ) -> Result<Vec<String>, Error> {
        let what = format!("the tag list of {repo}");
        follow_pages(&what, self.limits(), |next| async move {
            let page = self.tags_page(repo, next, page_size).await?;
            Ok((page.tags, page.next))
        })
        .await
    }

    /// One page: the first when `url` is `None`, else the page a `Link`
    /// named ([`TagPage::next`]), for a caller that pages itself.
    ///
    /// # Errors
    ///
    /// As [`Client::list_tags`], for one page.
    pub async fn tags_page(
        &self,
        repo: &Repository,
        url: Option<Url>,
        page_size: Option<usize>,
    ) -> Result<TagPage, Error> {
        let url = match url {
            Some(u) => u,
            None => {
                let mut u = self.api_url(repo, "tags/list")?;
                if let Some(n) = page_size {
                    u.query_pairs_mut().append_pair("n", &n.to_string());
                }
                u
            }
        };
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let call = Call::new(
            Method::GET,
            url.clone(),
            repo.registry(),
            Scopes::pull(repo.name()),
        );
        let (list, next): (List, _) = self.json_page(call, "tag list").await?;
        Ok(TagPage {
            tags: list.tags.unwrap_or_default(),
            next,
        })
    }

    /// GET one page of a JSON listing (`what`: for errors) and the URL its
    /// `Link: <…>; rel="next"` names.
    pub(crate) async fn json_page<T: serde::de::DeserializeOwned>(
        &self,
        call: Call,
        what: &str,
    ) -> Result<(T, Option<Url>), Error> {
        let url = call.url.clone();
        let resp = self.send(call).await?;
        let next = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
            .and_then(|l| url.join(&l).ok());
        let body = self
            .read_whole(resp, PAGE_LIMIT, &format!("{what} page"), &url)
            .await?;
        let page = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            method: "GET".into(),
            url: redact_url(&url),
            reason: format!("{what} is not valid JSON: {e}"),
        })?;
        Ok((page, next))
    }
}

/// Collect a listing page by page: `fetch` gets the `Link` the last page
/// named (`None` for the first page) and returns a page's entries and the next
/// link. Stops when a page names none or repeats one seen before, and
/// refuses, naming the bound, a listing of more than `limits.list_pages`
/// pages or `limits.list_entries` entries.
pub(crate) async fn follow_pages<T, F, Fut>(
    what: &str,
    limits: Limits,
    mut fetch: F,
) -> Result<Vec<T>, Error>
where
    F: FnMut(Option<Url>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<Url>), Error>>,
{
    let mut all = Vec::new();
    let mut next = None;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..limits.list_pages {
        let url = next.take();
        let shown = url.as_ref().map(redact_url).unwrap_or_default();
        let (entries, link) = fetch(url).await?;
        all.extend(entries);
        if all.len() > limits.list_entries {
            return Err(Error::Exceeded {
                what: format!("{what} has more than {} entries", limits.list_entries),
                url: shown,
                bound: reached("list-entries", limits.list_entries),
            });
        }
        match link {
            // A registry that hands back the same link would loop forever.
            Some(url) if seen.insert(url.to_string()) => next = Some(url),
            _ => return Ok(all),
        }
    }
    Err(Error::Exceeded {
        what: format!("{what} has more than {} pages", limits.list_pages),
        url: next.as_ref().map(redact_url).unwrap_or_default(),
        bound: reached("list-pages", limits.list_pages),
    })
}

/// The target of the `rel="next"` link in a `Link` header.
pub(crate) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listing_that_never_ends_is_refused_at_the_page_bound() {
        let mut pages = 0;
        let limits = Limits {
            list_pages: 50,
            ..Limits::default()
        };
        let err = follow_pages("the tag list of r.io/a", limits, |_| {
            pages += 1;
            let link = Url::parse(&format!("https://r.io/v2/a/tags/list?last={pages}")).unwrap();
            async move { Ok((vec![format!("t{pages}")], Some(link))) }
        })
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the tag list of r.io/a has more than 50 pages")
                && text.contains("--limit list-pages=N"),
            "{text}"
        );
        assert_eq!(pages, 50);
    }

    #[tokio::test]
    async fn a_listing_of_too_many_entries_is_refused() {
        let n = Limits::default().list_entries;
        let err = follow_pages("the catalog", Limits::default(), |_| async move {
            Ok((vec![0u8; n + 1], None))
        })
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the catalog has more than 1000000 entries")
                && text.contains("the limit list-entries is 1000000"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_repeated_link_ends_the_listing() {
        let link = Url::parse("https://r.io/v2/a/tags/list?last=x").unwrap();
        let got = follow_pages("t", Limits::default(), |_| {
            let link = link.clone();
            async move { Ok((vec![1], Some(link))) }
        })
        .await
        .unwrap();
        assert_eq!(got, [1, 1]);
    }

    #[test]
    fn finds_the_next_link() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#),
            Some("/v2/a/tags/list?n=2&last=b".into())
        );
        assert_eq!(
            next_link(r#"<https://x/prev>; rel="prev", <https://x/next>; rel="next""#),
            Some("https://x/next".into())
        );
        assert_eq!(next_link("garbage"), None);
    }
}
