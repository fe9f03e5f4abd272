//! Envoy's callbacks, resolved at load instead of by the dynamic linker.
//!
//! Linked as plain `extern "C"` functions, every callback the module calls would be bound when
//! Envoy `dlopen`s it: an Envoy without one refuses the module with the loader's `undefined
//! symbol`, before the module can say which Envoy it is built for. [`envoy_callbacks!`] declares
//! each callback instead as a function of the same name and signature that calls through an
//! address looked up with `dlsym` by [`resolve`](crate::abi::resolve), which
//! `envoy_dynamic_module_on_program_init` calls only once `hosting` has found the Envoy it is
//! built for. Before that (never, in practice: Envoy calls no other hook of a module whose
//! program init refused) each returns its type's default and calls nothing.

use std::ffi::{c_char, c_void};

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// The address of a symbol in the process's global scope (`RTLD_DEFAULT`, i.e. null on Linux):
/// Envoy's own exported callbacks. `name` ends with a NUL byte.
pub fn lookup(name: &str) -> *mut c_void {
    if !name.ends_with('\0') {
        return std::ptr::null_mut();
    }
    // SAFETY: a NUL-terminated name; dlsym only reads it.
    unsafe { dlsym(std::ptr::null_mut(), name.as_ptr().cast::<c_char>()) }
}

/// Declares Envoy's callbacks (`pub fn name(args) -> ret;`, as in an `extern "C"` block): for each,
/// an `unsafe fn` of that name calling through its resolved address; [`CALLBACKS`] (their names)
/// and `resolve` (looks each up; `Err` names the first one missing).
#[macro_export]
macro_rules! envoy_callbacks {
    ($( pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?; )*) => {
        #[allow(non_upper_case_globals)]
        mod slots {
            $( pub static $name: std::sync::atomic::AtomicPtr<std::ffi::c_void> =
                std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()); )*
        }

        /// The callbacks this module calls.
        pub const CALLBACKS: &[&str] = &[$(stringify!($name)),*];

        /// Looks up every callback; `Err`: the first that `lookup` did not find (then none is set).
        pub fn resolve(
            lookup: impl Fn(&str) -> *mut std::ffi::c_void,
        ) -> Result<(), &'static str> {
            let found = [$( (stringify!($name), lookup(concat!(stringify!($name), "\0"))) ),*];
            if let Some((missing, _)) = found.iter().find(|(_, p)| p.is_null()) {
                return Err(*missing);
            }
            let slots = [$( &slots::$name ),*];
            for (slot, (_, p)) in slots.iter().zip(found) {
                slot.store(p, std::sync::atomic::Ordering::Release);
            }
            Ok(())
        }

        $(
            /// # Safety
            /// As Envoy's `abi.h` says for this callback.
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                let p = slots::$name.load(std::sync::atomic::Ordering::Acquire);
                if p.is_null() {
                    return Default::default();
                }
                // SAFETY: `p` is Envoy's callback of this name, whose signature (that of the
                // release `hosting` admitted) is the one declared here.
                let f = std::mem::transmute::<
                    *mut std::ffi::c_void,
                    unsafe extern "C" fn($($ty),*) $(-> $ret)?,
                >(p);
                f($($arg),*)
            }
        )*
    };
}
