//! Canonical type text: how a type is spelled in a method's canonical
//! signature (see `ferry_interface::id`): as written, without spaces, with
//! only the last segment of each path. Walking the type also rejects what
//! cannot travel (references inside objects, pointers, lifetimes, `Self`).

use syn::spanned::Spanned;
use syn::{Error, Expr, GenericArgument, PathArguments, Type};

/// Strip invisible groups and parentheses around a type.
pub fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        Type::Paren(p) => peel(&p.elem),
        _ => ty,
    }
}

/// Tokens of an expression (an array length, a const generic) without
/// whitespace.
fn expr_text(e: &Expr) -> String {
    let s = quote::quote!(#e).to_string();
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A type as the user would write it, for messages (`Vec<u8>`, `*const u8`).
pub fn pretty(ty: &Type) -> String {
    let mut s = quote::quote!(#ty).to_string();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        ("* ", "*"),
        (" :: ", "::"),
        (":: ", "::"),
        (" ;", ";"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// The canonical text of an object's element type.
pub fn type_text(ty: &Type) -> syn::Result<String> {
    match peel(ty) {
        Type::Path(p) => {
            if p.qself.is_some() {
                return Err(Error::new(
                    ty.span(),
                    "ferry: qualified paths (`<T as Trait>::X`) are not supported in interface types; name the type directly",
                ));
            }
            if p.path.segments.iter().any(|s| s.ident == "Self") {
                return Err(Error::new(
                    ty.span(),
                    "ferry: `Self` cannot appear in an interface type (the server's type is not part of the interface)",
                ));
            }
            let Some(last) = p.path.segments.last() else {
                return Err(Error::new(ty.span(), "ferry: empty type path"));
            };
            let mut s = syn::ext::IdentExt::unraw(&last.ident).to_string();
            match &last.arguments {
                PathArguments::None => {}
                PathArguments::AngleBracketed(a) => {
                    let mut parts = Vec::new();
                    for arg in &a.args {
                        parts.push(match arg {
                            GenericArgument::Type(t) => type_text(t)?,
                            GenericArgument::Const(e) => expr_text(e),
                            GenericArgument::Lifetime(l) => {
                                return Err(lifetime_error(l.span()));
                            }
                            other => {
                                return Err(Error::new(
                                    other.span(),
                                    "ferry: only types and constants may be generic arguments of an interface type",
                                ));
                            }
                        });
                    }
                    s.push('<');
                    s.push_str(&parts.join(","));
                    s.push('>');
                }
                PathArguments::Parenthesized(_) => {
                    return Err(Error::new(
                        ty.span(),
                        "ferry: function traits cannot travel through an interface",
                    ));
                }
            }
            Ok(s)
        }
        Type::Array(a) => Ok(format!("[{};{}]", type_text(&a.elem)?, expr_text(&a.len))),
        Type::Slice(sl) => Ok(format!("[{}]", type_text(&sl.elem)?)),
        Type::Tuple(_) => Err(Error::new(
            ty.span(),
            "ferry: tuples cannot travel as objects; use a #[repr(C)] struct",
        )),
        Type::Reference(_) => Err(Error::new(
            ty.span(),
            "ferry: an object cannot be or contain a reference (`&mut &T`, `&&T`): only plain data travels",
        )),
        Type::Ptr(_) => Err(Error::new(
            ty.span(),
            "ferry: raw pointers cannot travel: the callee runs in another address space",
        )),
        _ => Err(Error::new(
            ty.span(),
            "ferry: unsupported object type: an object is a plain sized type, an array or a slice of one",
        )),
    }
}

/// The error for an explicit lifetime anywhere in a method signature.
pub fn lifetime_error(span: proc_macro2::Span) -> Error {
    Error::new(
        span,
        "ferry: explicit lifetimes are not supported in interface methods: every borrow lasts exactly for the call",
    )
}

/// The scalar types, as their canonical text.
pub const SCALARS: &[&str] = &[
    "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "bool",
];

/// The scalar a type names, if it is one (a bare primitive name).
pub fn scalar_name(ty: &Type) -> Option<String> {
    let Type::Path(p) = peel(ty) else {
        return None;
    };
    if p.qself.is_some() || p.path.leading_colon.is_some() || p.path.segments.len() != 1 {
        return None;
    }
    let seg = &p.path.segments[0];
    if !seg.arguments.is_none() {
        return None;
    }
    let name = seg.ident.to_string();
    SCALARS.contains(&name.as_str()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn canonical_text_keeps_the_last_segment_and_no_spaces() {
        let t: Type = parse_quote!(crate::a::Query);
        assert_eq!(type_text(&t).unwrap(), "Query");
        let t: Type = parse_quote!([[u16; 3]; N + 1]);
        assert_eq!(type_text(&t).unwrap(), "[[u16;3];N+1]");
        let t: Type = parse_quote!(w::Wrap<core::primitive::u32, 4>);
        assert_eq!(type_text(&t).unwrap(), "Wrap<u32,4>");
        for bad in [
            parse_quote!(&u8),
            parse_quote!(*const u8),
            parse_quote!((u8, u8)),
            parse_quote!(Self),
            parse_quote!(Cow<'static, u8>),
            parse_quote!(<T as X>::Y),
        ] {
            let bad: Type = bad;
            assert!(type_text(&bad).is_err(), "{}", pretty(&bad));
        }
    }

    #[test]
    fn messages_spell_types_as_written() {
        let t: Type = parse_quote!(Vec<u8>);
        assert_eq!(pretty(&t), "Vec<u8>");
        let t: Type = parse_quote!(*const u8);
        assert_eq!(pretty(&t), "*const u8");
        let t: Type = parse_quote!(Option<&mut [u8]>);
        assert_eq!(pretty(&t), "Option<&mut [u8]>");
    }

    #[test]
    fn scalars_are_bare_primitive_names() {
        let t: Type = parse_quote!(u32);
        assert_eq!(scalar_name(&t).as_deref(), Some("u32"));
        let t: Type = parse_quote!(core::primitive::u32);
        assert_eq!(scalar_name(&t), None);
        let t: Type = parse_quote!(char);
        assert_eq!(scalar_name(&t), None);
    }
}
