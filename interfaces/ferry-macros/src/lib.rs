//! Ferry's interface generator (skeleton: being written).
use proc_macro::TokenStream;

/// Generate client stub, server dispatch and description from a trait.
#[proc_macro_attribute]
pub fn interface(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Implement `ferry_interface::AppError` for a fieldless enum.
#[proc_macro_derive(AppError)]
pub fn derive_app_error(_item: TokenStream) -> TokenStream {
    TokenStream::new()
}
