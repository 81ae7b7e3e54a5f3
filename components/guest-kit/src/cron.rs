//! The cron components' entry point ([`cron_component!`](crate::cron_component)).

/// Makes the calling crate a cron component (the spin-trigger-cron world): generates its
/// bindings from the workspace's `wit/` and exports `handle-cron-event`, which calls
/// `$handler` (a `fn() -> Result<(), String>`) and hands its error to the trigger, which logs
/// it. The calling crate must depend on `spin-sdk` and sit in `components/`.
#[macro_export]
macro_rules! cron_component {
    ($handler:path) => {
        #[allow(missing_docs, reason = "generated bindings")]
        mod bindings {
            spin_sdk::wit_bindgen::generate!({
                path: "../../wit",
                world: "fermyon:spin-cron/spin-cron",
                runtime_path: "spin_sdk::wit_bindgen::rt",
            });
        }

        struct Cron;

        impl bindings::Guest for Cron {
            fn handle_cron_event(
                _: bindings::fermyon::spin_cron::cron_types::Metadata,
            ) -> Result<(), bindings::fermyon::spin_cron::cron_types::Error> {
                $handler().map_err(bindings::fermyon::spin_cron::cron_types::Error::Other)
            }
        }

        bindings::export!(Cron with_types_in bindings);
    };
}
