//! The `#[wedge_sdk::handler]` attribute. Use it through `wedge-sdk`, which
//! documents it; the expansion names only `::wedge_sdk` paths.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{FnArg, ItemFn, ReturnType, parse_macro_input};

/// Makes a function the component's `wasi:http` handler export:
/// `async fn(Request) -> impl IntoResponse`, `async fn() -> impl
/// IntoResponse`, or `fn() -> Router`. See `wedge_sdk::handler`.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return error(attr.span(), "#[wedge_sdk::handler] takes no arguments");
    }
    let mut function = parse_macro_input!(item as ItemFn);
    match expand(&mut function) {
        Ok(tokens) => tokens.into(),
        // The function and a `main` stay, so that the error above is the
        // only one: no "unused import" or "`main` not found" after it.
        Err(error) => {
            let error = error.to_compile_error();
            let main = (function.sig.ident != "main").then(|| {
                quote!(
                    fn main() {}
                )
            });
            quote!(#error #function #main).into()
        }
    }
}

fn expand(function: &mut ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let signature = &function.sig;
    if let Some(generics) = signature.generics.lt_token {
        return Err(syn::Error::new(
            generics.span(),
            "a Wedge handler cannot be generic: name the request type, `wedge_sdk::Request`",
        ));
    }
    if let Some(receiver) = signature.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            "a Wedge handler is a free function, not a method",
        ));
    }
    let is_async = signature.asyncness.is_some();
    let request_type = match signature.inputs.iter().collect::<Vec<_>>().as_slice() {
        [] => None,
        [FnArg::Typed(argument)] if is_async => Some(argument.ty.clone()),
        [argument, ..] if !is_async => {
            return Err(syn::Error::new(
                argument.span(),
                "a handler that takes the request must be `async fn(request: Request)`; \
                 a plain `fn()` takes nothing and returns a `Router`",
            ));
        }
        [_, extra, ..] => {
            return Err(syn::Error::new(
                extra.span(),
                "a Wedge handler takes one argument, the request: \
                 `async fn handler(request: Request) -> impl IntoResponse`",
            ));
        }
        [other] => {
            return Err(syn::Error::new(
                other.span(),
                "a Wedge handler is a free function, not a method",
            ));
        }
    };
    let output_span = match &signature.output {
        ReturnType::Default if !is_async => {
            return Err(syn::Error::new(
                signature.fn_token.span(),
                "a plain `fn` handler returns the `Router` that answers requests; \
                 to answer one yourself, write `async fn handler(request: Request) -> impl IntoResponse`",
            ));
        }
        ReturnType::Default => signature.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };

    // `main` is taken: the binary needs a plain `fn main`, provided below.
    if function.sig.ident == "main" {
        function.sig.ident = syn::Ident::new("__wedge_handler_main", function.sig.ident.span());
    }
    let name = &function.sig.ident;

    // Each check is spanned to the user's code, so a wrong type is reported
    // on the argument or the return type, not on the attribute.
    let handler = match (is_async, request_type) {
        (false, _) => quote_spanned! {output_span=>
            ::wedge_sdk::__private::router_handler(#name())
        },
        (true, None) => quote_spanned! {output_span=>
            ::wedge_sdk::__private::responds(move |_request: ::wedge_sdk::Request| #name())
        },
        (true, Some(request_type)) => {
            let request_check = quote_spanned! {request_type.span()=>
                ::wedge_sdk::__private::is_request::<#request_type>();
            };
            quote_spanned! {output_span=> {
                #request_check
                ::wedge_sdk::__private::responds(#name)
            }}
        }
    };

    Ok(quote! {
        #function

        // The export depends on the SDK's `wasi-0-3` feature, which a proc
        // macro cannot see: the SDK's `export_handler!` is defined per world.
        ::wedge_sdk::__private::export_handler!(#handler);

        /// Never called: a `wasi:http` component is entered through its
        /// `handle` export, but a binary crate must have a `main`.
        #[allow(dead_code)]
        fn main() {
            ::core::unreachable!("a wasi:http component is run through its `handle` export")
        }
    })
}

fn error(span: Span, message: &str) -> TokenStream {
    syn::Error::new(span, message).to_compile_error().into()
}
