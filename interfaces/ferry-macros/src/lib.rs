//! Ferry's interface generator: `#[interface]` turns a trait into a typed
//! migrating-call interface, `#[derive(AppError)]` turns a fieldless enum
//! into its error codes. Use both through `ferry_interface`, which
//! re-exports them (the generated code names `::ferry_interface` paths).
//!
//! The mapping, in short (the user's guide is `docs/INTERFACES.md`):
//! - `&T`, `&[T]` → an IN object; `&mut T`, `&mut [T]` → INOUT, or OUT with
//!   `#[out]` on the parameter (OUT objects reach the server zero-filled).
//!   `T` must be plain (`ferry_interface::Plain`), aligned to at most 16.
//! - `u8`..`u64`, `i8`..`i64`, `usize`, `isize`, `bool` → scalars, in order.
//! - at most 16 objects and 6 scalars per method; every method takes
//!   `&self`.
//! - `-> R` or `-> Result<R, E>`: `R` is `()`, a scalar or a pair of
//!   scalars; `E: AppError`.
//!
//! Whatever the mapping cannot express is refused at compile time with an
//! error starting with `ferry:`, at the offending item.
mod app_error;
mod canon;
mod generate;
mod model;

use proc_macro::TokenStream;
use quote::ToTokens;
use syn::{parse_macro_input, DeriveInput, ItemTrait};

/// Generate a typed interface from a trait.
///
/// ```ignore
/// #[ferry_interface::interface]            // or #[interface(prefix = "kv_")]
/// pub trait Kv {
///     fn get(&self, key: &[u8], value: &mut [u8]) -> Result<usize, KvError>;
///     fn fill(&self, #[out] value: &mut [u8]) -> u64;
/// }
/// ```
///
/// expands to the trait (with `#[out]` removed) and, for trait `Kv`:
/// - `const KV_INTERFACE: InterfaceDecl`: the name `"Kv"` and, in
///   declaration order, each method's entry name (prefix + method name,
///   at most 32 bytes) and method id (FNV-1a of the canonical signature,
///   `ferry_interface::id`);
/// - `struct KvClient<T: Transport>` with `bind(transport, domain)`,
///   `with_limits(limits)` and one method per trait method, same
///   parameters, returning `Result<R, Error<E>>` (`E = Infallible` for a
///   method returning a bare `R`);
/// - `struct KvServer<S: Kv + Sync + 'static>(pub &'static S)`
///   implementing `Serve`: checks each invocation against the signature and
///   calls the implementation.
///
/// Plus compile-time checks that object types are `Plain` and aligned to at
/// most 16, and that error types implement `AppError`.
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    let prefix = match model::parse_args(attr.into()) {
        Ok(p) => p,
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(proc_macro2::TokenStream::from(item));
            return out.into();
        }
    };
    let item = parse_macro_input!(item as ItemTrait);
    let (stripped, read) = model::read(item, prefix.as_ref());
    let mut out = stripped.to_token_stream();
    match read {
        Ok(iface) => out.extend(generate::interface(&iface)),
        Err(e) => out.extend(e.to_compile_error()),
    }
    out.into()
}

/// Implement `ferry_interface::AppError` for a fieldless enum whose every
/// variant has an explicit discriminant in `1..0xFFF0`: `code()` is the
/// discriminant, `from_code` its inverse. Anything else (a variant with
/// fields, a missing discriminant, a code of 0 or in the runtime's range
/// `0xFFF0..`) is refused at compile time.
#[proc_macro_derive(AppError)]
pub fn derive_app_error(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as DeriveInput);
    match app_error::derive(input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}
