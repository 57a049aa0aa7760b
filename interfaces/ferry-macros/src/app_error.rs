//! `#[derive(AppError)]`: a fieldless enum's discriminants as wire codes.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Expr, ExprLit, ExprUnary, Fields, Lit, UnOp};

/// `shared_abi::runtime_status::BASE`: codes from here on are the runtime's.
const BASE: u64 = 0xFFF0;

const RANGE: &str = "ferry: an AppError code (the variant's discriminant) must be in 1..0xFFF0: 0 reads as success and 0xFFF0.. are the runtime's statuses";

/// A discriminant's value if it is an integer literal (possibly negated).
fn literal(e: &Expr) -> Option<i128> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<i128>().ok(),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => literal(expr).map(|v| -v),
        Expr::Group(g) => literal(&g.expr),
        Expr::Paren(p) => literal(&p.expr),
        _ => None,
    }
}

pub fn derive(input: DeriveInput) -> syn::Result<TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(Error::new(
            input.ident.span(),
            "ferry: AppError derives only for a fieldless enum with explicit discriminants (`NotFound = 1`)",
        ));
    };
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(Error::new(
            input.generics.span(),
            "ferry: AppError cannot be derived for a generic enum",
        ));
    }
    let mut errs: Option<Error> = None;
    let mut push = |e: Error| match &mut errs {
        Some(all) => all.combine(e),
        None => errs = Some(e),
    };
    let mut checks = Vec::new();
    let ident = &input.ident;
    for v in &data.variants {
        if !matches!(v.fields, Fields::Unit) {
            push(Error::new(
                v.fields.span(),
                format!("ferry: AppError variant `{}` carries data: only a code travels, so every variant must be fieldless", v.ident),
            ));
            continue;
        }
        let Some((_, d)) = &v.discriminant else {
            push(Error::new(
                v.ident.span(),
                format!("ferry: AppError variant `{}` needs an explicit discriminant (its wire code, e.g. `{} = 1`)", v.ident, v.ident),
            ));
            continue;
        };
        match literal(d) {
            Some(n) if n < 1 || n >= i128::from(BASE) => push(Error::new(d.span(), RANGE)),
            Some(_) => {}
            None => {
                let vi = &v.ident;
                checks.push(quote_spanned! {d.span()=>
                    const _: () = ::core::assert!(
                        (#ident::#vi as i128) >= 1
                            && (#ident::#vi as i128)
                                < ::ferry_interface::__private::runtime_status::BASE as i128,
                        #RANGE
                    );
                });
            }
        }
    }
    if let Some(e) = errs {
        return Err(e);
    }
    let vs: Vec<_> = data.variants.iter().map(|v| &v.ident).collect();
    Ok(quote! {
        #(#checks)*
        impl ::ferry_interface::AppError for #ident {
            #[inline]
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            fn code(&self) -> u32 {
                match *self {
                    #(Self::#vs => Self::#vs as u32,)*
                }
            }
            #[inline]
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            fn from_code(code: u32) -> ::core::option::Option<Self> {
                match code {
                    #(c if c == Self::#vs as u32 => ::core::option::Option::Some(Self::#vs),)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    })
}
