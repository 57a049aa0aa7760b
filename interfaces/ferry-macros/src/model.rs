//! An interface trait read into what the generator needs, with every rule
//! of the mapping checked (each violation a `ferry:` error at the item).

use crate::canon::{self, lifetime_error, peel, scalar_name};
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments,
    ReturnType, TraitItem, TraitItemFn, Type, Visibility,
};

/// `shared_abi::MAX_ARGS`.
pub const MAX_OBJECTS: usize = 16;
/// `shared_abi::MAX_SCALARS`.
pub const MAX_SCALARS: usize = 6;
/// `shared_abi::ENTRY_NAME_MAX`.
pub const NAME_MAX: usize = 32;
/// Names the client type defines itself.
const RESERVED: &[&str] = &["bind", "with_limits"];

/// Which way an object travels.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    In,
    Out,
    InOut,
}

impl Mode {
    /// Its word in the canonical signature.
    pub fn text(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
            Self::InOut => "inout",
        }
    }
}

/// How one parameter travels.
pub enum Kind {
    /// By value in a scalar register; `index` among the scalars.
    Scalar { index: usize, name: String },
    /// Lent as an object; `index` among the objects.
    Object {
        index: usize,
        mode: Mode,
        /// `T` of `&T`, or the element of `&[T]`.
        elem: Box<Type>,
        slice: bool,
        /// Canonical text of `elem`.
        text: String,
    },
}

/// One parameter after `&self`.
pub struct Param {
    /// The name the client stub gives it.
    pub name: Ident,
    /// The type as written.
    pub ty: Type,
    pub kind: Kind,
}

/// One method.
pub struct Method {
    pub ident: Ident,
    /// The method's name (no `r#`).
    pub name: String,
    /// Prefix + name.
    pub entry: String,
    pub docs: Vec<Attribute>,
    pub params: Vec<Param>,
    /// The success type as written (`()` when the method returns nothing).
    pub ok_ty: Type,
    /// Its canonical text.
    pub ok_text: String,
    /// The error type of a `Result` return, with its canonical text.
    pub err: Option<(Type, String)>,
}

impl Method {
    /// How many objects the method lends.
    pub fn objects(&self) -> usize {
        self.params
            .iter()
            .filter(|p| matches!(p.kind, Kind::Object { .. }))
            .count()
    }
}

/// A whole interface.
pub struct Interface {
    pub vis: Visibility,
    pub ident: Ident,
    /// The trait's name (no `r#`).
    pub name: String,
    pub methods: Vec<Method>,
}

/// Errors gathered while reading, reported together.
#[derive(Default)]
pub struct Errors(Option<Error>);

impl Errors {
    pub fn push(&mut self, e: Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub fn push_at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(Error::new(span, msg));
    }

    pub fn finish(self) -> Option<Error> {
        self.0
    }
}

/// The `prefix = "…"` argument of `#[interface(…)]`.
pub fn parse_args(attr: proc_macro2::TokenStream) -> syn::Result<Option<LitStr>> {
    let mut prefix = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("prefix") {
            if prefix.is_some() {
                return Err(meta.error("ferry: `prefix` given twice"));
            }
            prefix = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error("ferry: unknown argument: #[interface] takes only `prefix = \"…\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(prefix)
}

/// Read and check `item`. On error the trait is still returned (stripped of
/// `#[out]`), so the user sees the macro's messages, not a cascade of
/// unresolved names.
pub fn read(mut item: ItemTrait, prefix: Option<&LitStr>) -> (ItemTrait, Result<Interface, Error>) {
    let mut errs = Errors::default();
    let prefix_text = prefix.map(LitStr::value).unwrap_or_default();
    let name = item.ident.unraw().to_string();
    check_trait(&item, &name, &mut errs);

    let mut methods: Vec<Method> = Vec::new();
    for ti in &mut item.items {
        match ti {
            TraitItem::Fn(f) => {
                if let Some(m) = read_method(f, &prefix_text, &mut errs) {
                    if let Some(prev) = methods.iter().find(|p| p.name == m.name) {
                        let mut e = Error::new(
                            m.ident.span(),
                            format!("ferry: duplicate method `{}`: entry names must be unique", m.name),
                        );
                        e.combine(Error::new(prev.ident.span(), "ferry: first defined here"));
                        errs.push(e);
                    }
                    methods.push(m);
                }
                strip_out(f);
            }
            TraitItem::Type(t) => errs.push_at(
                t.span(),
                "ferry: associated types are not supported in an interface (the wire format is fixed by the signature)",
            ),
            TraitItem::Const(c) => errs.push_at(
                c.span(),
                "ferry: associated consts are not supported in an interface; define a free `const` next to it",
            ),
            other => errs.push_at(
                other.span(),
                "ferry: an interface trait holds only methods",
            ),
        }
    }
    let result = match errs.finish() {
        Some(e) => Err(e),
        None => Ok(Interface {
            vis: item.vis.clone(),
            ident: item.ident.clone(),
            name,
            methods,
        }),
    };
    (item, result)
}

fn check_trait(item: &ItemTrait, name: &str, errs: &mut Errors) {
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errs.push_at(
            item.generics.span(),
            "ferry: generic interfaces are not supported: each method's wire format must be fixed",
        );
    }
    if let Some(u) = &item.unsafety {
        errs.push_at(u.span, "ferry: an interface trait cannot be `unsafe`");
    }
    if let Some(a) = &item.auto_token {
        errs.push_at(a.span, "ferry: an interface trait cannot be `auto`");
    }
    if name.len() > NAME_MAX {
        errs.push_at(
            item.ident.span(),
            format!(
                "ferry: interface name `{name}` is {} bytes; the ABI allows {NAME_MAX}",
                name.len()
            ),
        );
    }
}

/// Remove `#[out]` from the parameters (the trait itself must compile).
fn strip_out(f: &mut TraitItemFn) {
    for arg in &mut f.sig.inputs {
        if let FnArg::Typed(t) = arg {
            t.attrs.retain(|a| !a.path().is_ident("out"));
        }
    }
}

fn read_method(f: &TraitItemFn, prefix: &str, errs: &mut Errors) -> Option<Method> {
    let sig = &f.sig;
    let mut errs_here = Errors::default();
    let e = &mut errs_here;
    if let Some(b) = &f.default {
        e.push_at(
            b.span(),
            "ferry: interface methods have no default body: the server implements each of them",
        );
    }
    if let Some(t) = &sig.asyncness {
        e.push_at(t.span, "ferry: async methods are not supported: a call migrates the calling thread and returns when the callee does");
    }
    if let Some(t) = &sig.constness {
        e.push_at(
            t.span,
            "ferry: const methods are not supported in an interface",
        );
    }
    if let Some(t) = &sig.unsafety {
        e.push_at(
            t.span,
            "ferry: unsafe methods are not supported in an interface",
        );
    }
    if let Some(a) = &sig.abi {
        e.push_at(a.span(), "ferry: an interface method cannot name an ABI");
    }
    if let Some(v) = &sig.variadic {
        e.push_at(v.span(), "ferry: variadic methods are not supported");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        e.push_at(
            sig.generics.span(),
            "ferry: generic methods are not supported: each method's wire format must be fixed",
        );
    }
    let name = sig.ident.unraw().to_string();
    if RESERVED.contains(&name.as_str()) {
        e.push_at(
            sig.ident.span(),
            format!(
                "ferry: `{name}` is reserved: the generated client defines it; rename the method"
            ),
        );
    }
    let entry = format!("{prefix}{name}");
    if entry.len() > NAME_MAX {
        e.push_at(
            sig.ident.span(),
            format!(
                "ferry: entry name `{entry}` is {} bytes; the ABI allows {NAME_MAX} (shorten the method name or the prefix)",
                entry.len()
            ),
        );
    }

    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) => {
            if r.reference.is_none() {
                e.push_at(r.span(), "ferry: interface methods take `&self`, not `self` by value: the server is shared");
            } else if r.mutability.is_some() {
                e.push_at(r.span(), "ferry: interface methods take `&self`, not `&mut self`: several threads may run in a server at once (use interior mutability)");
            } else if let Some((_, Some(l))) = &r.reference {
                e.push(lifetime_error(l.span()));
            } else if r.colon_token.is_some() {
                e.push_at(r.span(), "ferry: write the receiver as `&self`");
            }
        }
        other => {
            let span = other.map_or(sig.ident.span(), Spanned::span);
            e.push_at(span, "ferry: an interface method takes `&self` first");
        }
    }

    let mut params = Vec::new();
    let mut objects = 0usize;
    let mut scalars = 0usize;
    for (i, arg) in inputs.enumerate() {
        let FnArg::Typed(pt) = arg else {
            e.push_at(arg.span(), "ferry: `self` must come first");
            continue;
        };
        let mut out = None;
        for a in &pt.attrs {
            if a.path().is_ident("out") {
                if !matches!(a.meta, syn::Meta::Path(_)) {
                    e.push_at(a.span(), "ferry: #[out] takes no arguments");
                } else if out.is_some() {
                    e.push_at(a.span(), "ferry: #[out] given twice");
                }
                out = Some(a.span());
            } else {
                e.push_at(
                    a.span(),
                    "ferry: the only attribute a parameter may have is #[out]",
                );
            }
        }
        let name = match &*pt.pat {
            Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => pi.ident.clone(),
            _ => quote::format_ident!("arg{}", i),
        };
        match read_param(&pt.ty, out, e) {
            Some(ParamShape::Scalar(n)) => {
                if scalars == MAX_SCALARS {
                    e.push_at(
                        pt.span(),
                        format!("ferry: more than {MAX_SCALARS} scalar parameters: the ABI carries at most {MAX_SCALARS} (pass the rest in a struct by reference)"),
                    );
                }
                params.push(Param {
                    name,
                    ty: (*pt.ty).clone(),
                    kind: Kind::Scalar {
                        index: scalars,
                        name: n,
                    },
                });
                scalars += 1;
            }
            Some(ParamShape::Object {
                mode,
                elem,
                slice,
                text,
            }) => {
                if objects == MAX_OBJECTS {
                    e.push_at(
                        pt.span(),
                        format!("ferry: more than {MAX_OBJECTS} objects (reference parameters): the ABI carries at most {MAX_OBJECTS}"),
                    );
                }
                params.push(Param {
                    name,
                    ty: (*pt.ty).clone(),
                    kind: Kind::Object {
                        index: objects,
                        mode,
                        elem,
                        slice,
                        text,
                    },
                });
                objects += 1;
            }
            None => {}
        }
    }

    let ret = read_return(&sig.output, e);
    let failed = errs_here.0.is_some();
    if let Some(err) = errs_here.finish() {
        errs.push(err);
    }
    if failed {
        return None;
    }
    let (ok_text, ok_ty, err) = ret?;
    Some(Method {
        ident: sig.ident.clone(),
        name,
        entry,
        docs: f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect(),
        params,
        ok_ty,
        ok_text,
        err,
    })
}

enum ParamShape {
    Scalar(String),
    Object {
        mode: Mode,
        elem: Box<Type>,
        slice: bool,
        text: String,
    },
}

const UNSUPPORTED: &str = "a parameter is an integer or `bool` (a scalar) or a borrow of plain data (`&T`, `&[T]`, `&mut T`, `&mut [T]`)";

fn read_param(ty: &Type, out: Option<Span>, e: &mut Errors) -> Option<ParamShape> {
    let shape = match peel(ty) {
        Type::Reference(r) => {
            if let Some(l) = &r.lifetime {
                e.push(lifetime_error(l.span()));
                return None;
            }
            let mode = match (r.mutability.is_some(), out.is_some()) {
                (false, _) => Mode::In,
                (true, false) => Mode::InOut,
                (true, true) => Mode::Out,
            };
            let inner = peel(&r.elem);
            if let Type::Path(p) = inner {
                if p.qself.is_none() && p.path.is_ident("str") {
                    e.push_at(ty.span(), "ferry: `&str` cannot travel: pass `&[u8]` (e.g. `s.as_bytes()`) and check UTF-8 on the other side");
                    return None;
                }
            }
            let (elem, slice) = match inner {
                Type::Slice(s) => (s.elem.clone(), true),
                other => (Box::new(other.clone()), false),
            };
            let text = match canon::type_text(&elem) {
                Ok(t) => t,
                Err(err) => {
                    e.push(err);
                    return None;
                }
            };
            let text = if slice { format!("[{text}]") } else { text };
            ParamShape::Object {
                mode,
                elem,
                slice,
                text,
            }
        }
        other => {
            if let Some(n) = scalar_name(other) {
                ParamShape::Scalar(n)
            } else {
                let hint = match other {
                    Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "String" || s.ident == "Vec") => {
                        " (pass a slice: `&[u8]`, `&[T]`)"
                    }
                    Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Option") => {
                        " (an `Option` has no wire form: use a flag scalar or a separate method)"
                    }
                    Type::Tuple(_) => " (pass the fields as separate parameters, or a #[repr(C)] struct by reference)",
                    Type::Ptr(_) => " (raw pointers cannot travel: the callee runs in another address space)",
                    _ => "",
                };
                e.push_at(
                    ty.span(),
                    format!(
                        "ferry: unsupported parameter type `{}`: {UNSUPPORTED}{hint}",
                        canon::pretty(ty)
                    ),
                );
                return None;
            }
        }
    };
    if let (Some(span), ParamShape::Scalar(_) | ParamShape::Object { mode: Mode::In, .. }) =
        (out, &shape)
    {
        e.push_at(
            span,
            "ferry: #[out] applies only to a `&mut T` or `&mut [T]` parameter",
        );
        return None;
    }
    Some(shape)
}

const BAD_RETURN: &str = "a method returns `()`, a scalar or a pair of scalars, optionally as `Result<_, E>` with `E: AppError`; objects come back through `&mut` parameters";

/// Canonical text of the success type, the type as written, the error.
type Ret = (String, Type, Option<(Type, String)>);

fn read_return(out: &ReturnType, e: &mut Errors) -> Option<Ret> {
    let ty = match out {
        ReturnType::Default => return Some(("()".into(), syn::parse_quote!(()), None)),
        ReturnType::Type(_, t) => &**t,
    };
    if let Type::Path(p) = peel(ty) {
        let last = p.path.segments.last()?;
        if p.qself.is_none() && last.ident == "Result" {
            let PathArguments::AngleBracketed(a) = &last.arguments else {
                e.push_at(ty.span(), "ferry: write the result as `Result<T, E>`");
                return None;
            };
            let tys: Vec<&Type> = a
                .args
                .iter()
                .filter_map(|g| match g {
                    GenericArgument::Type(t) => Some(t),
                    _ => None,
                })
                .collect();
            if tys.len() != 2 || a.args.len() != 2 {
                e.push_at(
                    ty.span(),
                    "ferry: write the result as `Result<T, E>` (both type parameters, no alias)",
                );
                return None;
            }
            let ok = read_ok(tys[0], e)?;
            let err_text = match peel(tys[1]) {
                Type::Path(_) => match canon::type_text(tys[1]) {
                    Ok(t) => t,
                    Err(err) => {
                        e.push(err);
                        return None;
                    }
                },
                _ => {
                    e.push_at(tys[1].span(), "ferry: the error of a `Result` must be a named type implementing `AppError` (e.g. a `#[derive(AppError)]` enum)");
                    return None;
                }
            };
            return Some((ok, tys[0].clone(), Some((tys[1].clone(), err_text))));
        }
    }
    let ok = read_ok(ty, e)?;
    Some((ok, ty.clone(), None))
}

fn read_ok(ty: &Type, e: &mut Errors) -> Option<String> {
    let bad = |e: &mut Errors| {
        e.push_at(
            ty.span(),
            format!(
                "ferry: unsupported return type `{}`: {BAD_RETURN}",
                canon::pretty(ty)
            ),
        );
        None
    };
    match peel(ty) {
        Type::Tuple(t) if t.elems.is_empty() => Some("()".into()),
        Type::Tuple(t) if t.elems.len() == 2 => {
            let a = scalar_name(&t.elems[0]);
            let b = scalar_name(&t.elems[1]);
            match (a, b) {
                (Some(a), Some(b)) => Some(format!("({a},{b})")),
                _ => bad(e),
            }
        }
        other => match scalar_name(other) {
            Some(n) => Some(n),
            None => bad(e),
        },
    }
}
