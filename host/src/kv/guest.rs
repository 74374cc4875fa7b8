//! The guest's side of the boundary: `wasi:keyvalue@0.2.0-draft2`'s
//! `store`, `atomics` and `batch` on a request's [`KvCtx`].

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::{OpError, Store, Stores};
use crate::settings::RouteSettings;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue.wit",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::kv::Store,
            "wasi:keyvalue/atomics.cas": crate::kv::guest::Cas,
        },
    });
}

use generated::wasi::keyvalue::atomics::{self, CasError};
use generated::wasi::keyvalue::batch;
use generated::wasi::keyvalue::store::{self, Error, KeyResponse};

type Answer<T> = wasmtime::Result<Result<T, Error>>;

/// A compare-and-swap in progress: the key, and its value when read.
pub struct Cas {
    store: Store,
    key: String,
    current: Option<Vec<u8>>,
}

/// One request's access to the stores: which it may open, and for how long
/// an operation may take.
pub struct KvCtx {
    stores: Arc<Stores>,
    route: Arc<str>,
    settings: Arc<RouteSettings>,
    /// Whether this request's denied `open` was logged already, so a guest
    /// that retries in a loop logs one line, not thousands.
    denied_logged: bool,
}

impl KvCtx {
    /// Access for one request of `route`, as its `settings` grant.
    pub fn new(stores: Arc<Stores>, route: Arc<str>, settings: Arc<RouteSettings>) -> KvCtx {
        KvCtx {
            stores,
            route,
            settings,
            denied_logged: false,
        }
    }
}

/// What the host functions run on: the request's access and its resources.
pub struct KvView<'a> {
    /// The request's access.
    pub ctx: &'a mut KvCtx,
    /// The instance's resource table, shared with WASI.
    pub table: &'a mut ResourceTable,
}

struct WasiKeyValue;

impl HasData for WasiKeyValue {
    type Data<'a> = KvView<'a>;
}

/// Links `store`, `atomics` and `batch`; `get` finds a request's view.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, WasiKeyValue>(linker, get)?;
    atomics::add_to_linker::<T, WasiKeyValue>(linker, get)?;
    batch::add_to_linker::<T, WasiKeyValue>(linker, get)?;
    Ok(())
}

impl KvView<'_> {
    fn store(&self, bucket: &Resource<Store>) -> wasmtime::Result<Store> {
        Ok(self.table.get(bucket)?.clone())
    }

    fn timeout(&self) -> std::time::Duration {
        self.ctx.settings.timeout
    }

    /// Runs `run` on the bucket's store within the route's timeout, counted
    /// in the metrics as `op`; a failure is the guest's `error::other`.
    /// (`&mut`: the future must be `Send`, and a `&KvView` is not, since
    /// the resource table is not `Sync`.)
    async fn on<T>(
        &mut self,
        bucket: &Resource<Store>,
        op: &'static str,
        run: impl AsyncFnOnce(&Store) -> Result<T, OpError>,
    ) -> Answer<T> {
        let store = self.store(bucket)?;
        let outcome = store.measured(op, self.timeout(), run(&store)).await;
        Ok(outcome.map_err(Error::Other))
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Answer<Resource<Store>> {
        let granted = &self.ctx.settings.key_value_stores;
        if !granted.contains(&identifier) {
            self.ctx.stores.metrics.record_denied();
            if !std::mem::replace(&mut self.ctx.denied_logged, true) {
                tracing::warn!(
                    route = %self.ctx.route,
                    "route {} opened key-value store {identifier:?}, which it is not granted: \
                     add \"{identifier}\" to `key_value_stores` in its sidecar",
                    self.ctx.route
                );
            }
            return Ok(Err(Error::AccessDenied));
        }
        // Every name a sidecar may grant is a store: embedded unless
        // `[key_value.NAME]` says otherwise, so `no-such-store` never comes.
        let store = self.ctx.stores.store(&identifier);
        Ok(Ok(self.table.push(store)?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, bucket: Resource<Store>, key: String) -> Answer<Option<Vec<u8>>> {
        self.on(&bucket, "get", async move |store| store.get(key).await)
            .await
    }

    async fn set(&mut self, bucket: Resource<Store>, key: String, value: Vec<u8>) -> Answer<()> {
        self.on(&bucket, "set", async move |store| {
            store.set(key, value).await
        })
        .await
    }

    async fn delete(&mut self, bucket: Resource<Store>, key: String) -> Answer<()> {
        self.on(&bucket, "delete", async move |store| {
            store.delete(key).await
        })
        .await
    }

    async fn exists(&mut self, bucket: Resource<Store>, key: String) -> Answer<bool> {
        self.on(&bucket, "exists", async move |store| {
            store.exists(key).await
        })
        .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Store>,
        cursor: Option<String>,
    ) -> Answer<KeyResponse> {
        let page = self
            .on(&bucket, "list_keys", async move |store| {
                store.list_keys(cursor).await
            })
            .await?;
        Ok(page.map(|page| KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(&mut self, bucket: Resource<Store>, key: String, delta: i64) -> Answer<i64> {
        self.on(&bucket, "increment", async move |store| {
            store.increment(key, delta).await
        })
        .await
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let Cas {
            store,
            key,
            current,
        } = self.table.delete(cas)?;
        let run = store.swap(key.clone(), current, value);
        match store.measured("swap", self.timeout(), run).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Lost the race: hand back a fresh read, so the guest's
                // retry starts from the value that won.
                let run = store.get(key.clone());
                match store.measured("get", self.timeout(), run).await {
                    Ok(current) => {
                        let retry = self.table.push(Cas {
                            store,
                            key,
                            current,
                        })?;
                        Ok(Err(CasError::CasFailed(retry)))
                    }
                    Err(error) => Ok(Err(CasError::StoreError(Error::Other(error)))),
                }
            }
            Err(error) => Ok(Err(CasError::StoreError(Error::Other(error)))),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(&mut self, bucket: Resource<Store>, key: String) -> Answer<Resource<Cas>> {
        let store = self.store(&bucket)?;
        let run = store.get(key.clone());
        match store.measured("get", self.timeout(), run).await {
            Ok(current) => Ok(Ok(self.table.push(Cas {
                store,
                key,
                current,
            })?)),
            Err(error) => Ok(Err(Error::Other(error))),
        }
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Answer<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Store>,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Vec<u8>)>>> {
        self.on(&bucket, "get_many", async move |store| {
            let values = store.get_many(keys.clone()).await?;
            let pairs = keys.into_iter().zip(values);
            Ok(pairs.map(|(key, value)| Some((key, value?))).collect())
        })
        .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Store>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Answer<()> {
        self.on(&bucket, "set_many", async move |store| {
            store.set_many(key_values).await
        })
        .await
    }

    async fn delete_many(&mut self, bucket: Resource<Store>, keys: Vec<String>) -> Answer<()> {
        self.on(&bucket, "delete_many", async move |store| {
            store.delete_many(keys).await
        })
        .await
    }
}
