//! JSON values in a [`Store`]: `get_json`, `set_json` and `update_json`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, Store};

impl Store {
    /// The value of `key` deserialized from JSON; `None` if it has none.
    /// A value that is not the JSON `T` expects is [`Error::Json`].
    ///
    /// ```
    /// use serde::Deserialize;
    /// use wedge_sdk::kv;
    ///
    /// #[derive(Deserialize)]
    /// struct Profile {
    ///     name: String,
    /// }
    ///
    /// fn name(store: &kv::Store, user: u64) -> Result<Option<String>, kv::Error> {
    ///     let profile: Option<Profile> = store.get_json(&format!("profile:{user}"))?;
    ///     Ok(profile.map(|profile| profile.name))
    /// }
    /// ```
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get(key)?
            .map(|bytes| self.decode(key, &bytes))
            .transpose()
    }

    /// Sets `key` to `value` as JSON.
    ///
    /// ```
    /// use serde::Serialize;
    /// use wedge_sdk::kv;
    ///
    /// #[derive(Serialize)]
    /// struct Profile {
    ///     name: String,
    /// }
    ///
    /// fn save(store: &kv::Store, user: u64, profile: &Profile) -> Result<(), kv::Error> {
    ///     store.set_json(&format!("profile:{user}"), profile)
    /// }
    /// ```
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        self.set(key, self.encode(key, value)?)
    }

    /// Changes the JSON value of `key` with `change` atomically and returns
    /// the value written: [`update`](Store::update) for JSON. `change` gets
    /// the current value (`None` if there is none) and may run more than
    /// once, each time on a newer value.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use wedge_sdk::kv;
    ///
    /// #[derive(Serialize, Deserialize, Default)]
    /// struct Cart {
    ///     items: Vec<String>,
    /// }
    ///
    /// fn add_to_cart(store: &kv::Store, user: u64, item: &str) -> Result<Cart, kv::Error> {
    ///     store.update_json(&format!("cart:{user}"), |cart: Option<Cart>| {
    ///         let mut cart = cart.unwrap_or_default();
    ///         cart.items.push(item.to_owned());
    ///         cart
    ///     })
    /// }
    /// ```
    pub fn update_json<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<T>) -> T,
    ) -> Result<T, Error> {
        let mut written = None;
        self.update(key, |old| {
            let old = old.map(|bytes| self.decode(key, bytes)).transpose()?;
            let new = change(old);
            let bytes = self.encode(key, &new)?;
            written = Some(new);
            Ok::<_, Error>(Some(bytes))
        })?;
        Ok(written.expect("update wrote a value or failed: a bug in wedge_sdk::kv otherwise"))
    }

    /// `bytes`, the value of `key`, as the JSON `T`.
    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(bytes).map_err(|error| {
            self.json_error(
                key,
                format!("the stored value is not the JSON expected: {error}"),
            )
        })
    }

    /// `value`, for `key`, as JSON.
    fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(value).map_err(|error| {
            self.json_error(key, format!("the value cannot be written as JSON: {error}"))
        })
    }

    fn json_error(&self, key: &str, message: String) -> Error {
        Error::Json {
            store: self.name.clone(),
            key: key.to_owned(),
            message,
        }
    }
}
