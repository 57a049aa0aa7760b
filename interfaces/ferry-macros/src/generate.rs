//! Code generated for a checked [`Interface`]: the description constant,
//! the client stub, the server wrapper and the compile-time type checks.

use crate::model::{Interface, Kind, Method, Mode, MAX_OBJECTS, MAX_SCALARS};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Ident;

/// `Kv` → `KV`, `KeyValue` → `KEY_VALUE`, `HTTPServer` → `HTTP_SERVER`.
pub fn screaming(name: &str) -> String {
    let c: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &ch) in c.iter().enumerate() {
        if ch.is_uppercase() && i > 0 {
            let prev = c[i - 1];
            let next_lower = c.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.extend(ch.to_uppercase());
    }
    out
}

/// Everything the attribute expands to (besides the trait itself).
pub fn interface(i: &Interface) -> TokenStream {
    let decl = format_ident!("{}_INTERFACE", screaming(&i.name), span = i.ident.span());
    let client = format_ident!("{}Client", i.ident, span = i.ident.span());
    let server = format_ident!("{}Server", i.ident, span = i.ident.span());
    let checks = checks(i);
    let description = description(i, &decl);
    let client_code = client_stub(i, &decl, &client);
    let server_code = server_wrapper(i, &decl, &server);
    quote! {
        #checks
        #description
        #client_code
        #server_code
    }
}

/// Compile-time checks of the types the macro cannot judge by their name:
/// every object type is `Plain`, aligned to at most 16 and, in a slice, not
/// zero-sized; every error type is an `AppError`. Spanned at the type, so
/// the message points at the parameter.
fn checks(i: &Interface) -> TokenStream {
    let mut out = TokenStream::new();
    for m in &i.methods {
        for p in &m.params {
            if let Kind::Object { elem, slice, .. } = &p.kind {
                // The element, for a slice: `T: Plain` makes `[T]: Plain`,
                // and rustc reports `Plain`'s own message only for a bound
                // that fails at its first level.
                let span = p.ty.span();
                out.extend(quote_spanned! {span=>
                    const _: fn() = || {
                        fn plain<T: ?::core::marker::Sized + ::ferry_interface::Plain>() {}
                        plain::<#elem>();
                    };
                    const _: () = ::ferry_interface::types::check_object::<#elem>(#slice);
                });
            }
        }
        if let Some((err, _)) = &m.err {
            out.extend(quote_spanned! {err.span()=>
                const _: fn() = || {
                    fn app_error<E: ::ferry_interface::AppError>() {}
                    app_error::<#err>();
                };
            });
        }
    }
    out
}

/// The method id expression: FNV-1a over the canonical signature, sizes of
/// object types filled in by the compiler.
fn method_id(iface: &str, m: &Method) -> TokenStream {
    let mut pieces: Vec<TokenStream> = Vec::new();
    let mut text = format!("{iface}.{}(", m.name);
    for (n, p) in m.params.iter().enumerate() {
        if n > 0 {
            text.push(',');
        }
        match &p.kind {
            Kind::Scalar { name, .. } => text.push_str(name),
            Kind::Object {
                mode,
                elem,
                text: t,
                ..
            } => {
                text.push_str(mode.text());
                text.push(' ');
                text.push_str(t);
                text.push(':');
                let s = std::mem::take(&mut text);
                pieces.push(quote!(.str(#s)));
                pieces.push(quote!(.size::<#elem>()));
            }
        }
    }
    text.push_str(")->");
    text.push_str(&m.ok_text);
    if let Some((_, e)) = &m.err {
        text.push('|');
        text.push_str(e);
    }
    pieces.push(quote!(.str(#text)));
    quote!(::ferry_interface::MethodId::new() #(#pieces)* .finish())
}

/// The canonical signature with `<size>` in place of each size (for the
/// doc comment: the sizes are known only to the compiler).
fn signature_doc(iface: &str, m: &Method) -> String {
    let params: Vec<String> = m
        .params
        .iter()
        .map(|p| match &p.kind {
            Kind::Scalar { name, .. } => name.clone(),
            Kind::Object { mode, text, .. } => format!("{} {text}:<size>", mode.text()),
        })
        .collect();
    let err = m
        .err
        .as_ref()
        .map(|(_, e)| format!("|{e}"))
        .unwrap_or_default();
    format!(
        "{iface}.{}({})->{}{err}",
        m.name,
        params.join(","),
        m.ok_text
    )
}

fn description(i: &Interface, decl: &Ident) -> TokenStream {
    let vis = &i.vis;
    let name = &i.name;
    let methods = i.methods.iter().map(|m| {
        let entry = &m.entry;
        let id = method_id(name, m);
        quote!(::ferry_interface::MethodDecl { entry: #entry, id: #id })
    });
    let sigs: Vec<String> = i
        .methods
        .iter()
        .map(|m| format!(" - `{}`: `{}`", m.entry, signature_doc(name, m)))
        .collect();
    let doc = format!(
        "Interface `{name}` (generated by `#[interface]`): its name and its methods in declaration order, with their entry names and method ids. Canonical signatures:\n\n{}",
        sigs.join("\n")
    );
    quote! {
        #[doc = #doc]
        #vis const #decl: ::ferry_interface::InterfaceDecl = ::ferry_interface::InterfaceDecl {
            name: #name,
            methods: &[#(#methods),*],
        };
    }
}

fn mode_tokens(mode: Mode) -> TokenStream {
    match mode {
        Mode::In => quote!(::ferry_interface::__private::ArgMode::In),
        Mode::Out => quote!(::ferry_interface::__private::ArgMode::Out),
        Mode::InOut => quote!(::ferry_interface::__private::ArgMode::InOut),
    }
}

fn err_type(m: &Method) -> TokenStream {
    match &m.err {
        Some((e, _)) => quote!(#e),
        None => quote!(::core::convert::Infallible),
    }
}

fn client_method(index: usize, m: &Method, trait_ident: &Ident) -> TokenStream {
    let ident = &m.ident;
    let ok = &m.ok_ty;
    let err = err_type(m);
    let params = m.params.iter().map(|p| {
        let (n, t) = (&p.name, &p.ty);
        quote!(#n: #t)
    });
    let mut scalars: Vec<TokenStream> = Vec::new();
    let mut objects: Vec<TokenStream> = Vec::new();
    for p in &m.params {
        let n = &p.name;
        match &p.kind {
            Kind::Scalar { .. } => scalars.push(quote!(::ferry_interface::Scalar::to_word(#n))),
            Kind::Object {
                mode, elem, slice, ..
            } => {
                let t = if *slice {
                    quote!([#elem])
                } else {
                    quote!(#elem)
                };
                objects.push(if *mode == Mode::In {
                    quote!(::ferry_interface::client::desc_in::<#t>(#n))
                } else {
                    let md = mode_tokens(*mode);
                    quote!(::ferry_interface::client::desc_mut::<#t>(#n, #md))
                });
            }
        }
    }
    let nargs = Literal::u32_unsuffixed(u32::try_from(objects.len()).unwrap_or(u32::MAX));
    while scalars.len() < MAX_SCALARS {
        scalars.push(quote!(0));
    }
    while objects.len() < MAX_OBJECTS {
        objects.push(quote!(::ferry_interface::__private::ArgDesc {
            addr: 0,
            len: 0,
            mode: 0,
            flags: 0
        }));
    }
    let docs = if m.docs.is_empty() {
        let d = format!("Call `{trait_ident}::{}` in the server.", m.name);
        quote!(#[doc = #d])
    } else {
        let d = &m.docs;
        quote!(#(#d)*)
    };
    let index = Literal::usize_unsuffixed(index);
    quote! {
        #docs
        #[inline]
        #[allow(clippy::too_many_arguments)]
        pub fn #ident(&self, #(#params),*) -> ::core::result::Result<#ok, ::ferry_interface::Error<#err>> {
            let __ferry_slot = self.slots[#index];
            if __ferry_slot == ::ferry_interface::NO_SLOT {
                return ::core::result::Result::Err(::ferry_interface::Error::Ferry(
                    ::ferry_interface::Failure::Call(::ferry_interface::__private::ErrorCode::BadSlot),
                ));
            }
            let __ferry_req = ::ferry_interface::__private::CallRequest {
                slot: __ferry_slot,
                nargs: #nargs,
                scalars: [#(#scalars),*],
                args: [#(#objects),*],
            };
            // SAFETY: every descriptor was made from a borrow this method
            // holds until the call returns (`&T` for IN, `&mut T` for OUT
            // and INOUT), so the memory is valid and nothing else uses it.
            let (__ferry_status, __ferry_regs) = unsafe {
                ::ferry_interface::Transport::call(&self.transport, &__ferry_req, self.limits)
            };
            ::ferry_interface::finish::<#ok, #err>(__ferry_status, __ferry_regs)
        }
    }
}

fn client_stub(i: &Interface, decl: &Ident, client: &Ident) -> TokenStream {
    let vis = &i.vis;
    let n = Literal::usize_unsuffixed(i.methods.len());
    let trait_ident = &i.ident;
    let methods = i
        .methods
        .iter()
        .enumerate()
        .map(|(k, m)| client_method(k, m, trait_ident));
    let doc = format!(
        "Client of interface `{}` (generated by `#[interface]`): one method per method of the trait, each a migrating call into the server domain it was bound to. Ferry's own failures come back as `Error::Ferry`, the server's errors as `Error::App`.",
        i.name
    );
    quote! {
        #[doc = #doc]
        #vis struct #client<__FerryT: ::ferry_interface::Transport> {
            transport: __FerryT,
            slots: [u32; #n],
            limits: ::ferry_interface::Limits,
        }

        impl<__FerryT: ::ferry_interface::Transport> #client<__FerryT> {
            /// Bind the methods `domain` serves to this image: each method
            /// the manifest granted gets its capability slot, once; an
            /// ungranted one answers `BadSlot` without a call. Fails if no
            /// method is granted (`NotGranted`) or the image did not
            /// declare the interface among those it uses (`NotDeclared`).
            pub fn bind(
                transport: __FerryT,
                domain: &str,
            ) -> ::core::result::Result<Self, ::ferry_interface::BindError> {
                let slots = ::ferry_interface::client::resolve::<#n>(&transport, &#decl, domain)?;
                ::core::result::Result::Ok(Self {
                    transport,
                    slots,
                    limits: ::ferry_interface::Limits {
                        budget_us: 0,
                        wait_us: 0,
                    },
                })
            }

            /// The same handle, making its calls with `limits` (CPU budget
            /// and wait limit; 0 = the manifest's defaults).
            #[must_use]
            pub fn with_limits(self, limits: ::ferry_interface::Limits) -> Self {
                Self { limits, ..self }
            }

            #(#methods)*
        }
    }
}

fn server_arm(index: usize, m: &Method, trait_ident: &Ident) -> TokenStream {
    let nobj = Literal::usize_unsuffixed(m.objects());
    let ident = &m.ident;
    let mut reads = Vec::new();
    let mut args = Vec::new();
    for (k, p) in m.params.iter().enumerate() {
        let v = format_ident!("__ferry_p{}", k);
        match &p.kind {
            Kind::Scalar { index, .. } => {
                let t = &p.ty;
                let ix = Literal::usize_unsuffixed(*index);
                reads.push(quote!(let #v = __ferry_inc.scalar::<#t>(#ix)?;));
            }
            Kind::Object {
                index,
                mode,
                elem,
                slice,
                ..
            } => {
                let t = if *slice {
                    quote!([#elem])
                } else {
                    quote!(#elem)
                };
                let ix = Literal::usize_unsuffixed(*index);
                reads.push(if *mode == Mode::In {
                    quote!(let #v = __ferry_inc.input::<#t>(#ix)?;)
                } else {
                    let md = mode_tokens(*mode);
                    quote!(let #v = __ferry_inc.output::<#t>(#ix, #md)?;)
                });
            }
        }
        args.push(v);
    }
    let call = quote!(<__FerryS as #trait_ident>::#ident(self.0, #(#args),*));
    let ok = &m.ok_ty;
    let result = match &m.err {
        Some((e, _)) => quote!(::ferry_interface::reply::<#ok, #e>(#call)),
        None => quote!(::ferry_interface::reply::<#ok, ::core::convert::Infallible>(
            ::core::result::Result::Ok(#call)
        )),
    };
    let index = Literal::usize_unsuffixed(index);
    quote! {
        #index => {
            __ferry_inc.expect_objects(#nobj)?;
            #(#reads)*
            #result
        }
    }
}

fn server_wrapper(i: &Interface, decl: &Ident, server: &Ident) -> TokenStream {
    let vis = &i.vis;
    let t = &i.ident;
    let arms = i
        .methods
        .iter()
        .enumerate()
        .map(|(k, m)| server_arm(k, m, t));
    let doc = format!(
        "Server of interface `{}` (generated by `#[interface]`): serves the implementation it holds; put it in the image's entry table. Its dispatch checks each invocation against the method's signature (object count, modes, lengths, alignment, scalar ranges) and answers `runtime_status::MALFORMED` without calling the implementation if it does not match.",
        i.name
    );
    quote! {
        #[doc = #doc]
        #vis struct #server<__FerryS: #t + ::core::marker::Sync + 'static>(
            /// The implementation.
            pub &'static __FerryS,
        );

        impl<__FerryS: #t + ::core::marker::Sync + 'static> ::ferry_interface::Serve for #server<__FerryS> {
            fn interface(&self) -> &'static ::ferry_interface::InterfaceDecl {
                &#decl
            }

            fn dispatch(
                &self,
                __ferry_method: usize,
                __ferry_inc: &mut ::ferry_interface::Incoming<'_>,
            ) -> ::core::result::Result<[u64; 2], u32> {
                match __ferry_method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(
                        ::ferry_interface::__private::runtime_status::UNKNOWN_ENTRY,
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::screaming;

    #[test]
    fn constant_names() {
        assert_eq!(screaming("Kv"), "KV");
        assert_eq!(screaming("KeyValue"), "KEY_VALUE");
        assert_eq!(screaming("HTTPServer"), "HTTP_SERVER");
        assert_eq!(screaming("Sha256Hasher"), "SHA256_HASHER");
    }
}
