;; A component that exports neither wasi:cli/run nor wasi:http/incoming-handler, only `greet`:
;; a host refuses it, naming what it exports.
(component
  (core module $m (func (export "greet")))
  (core instance $i (instantiate $m))
  (func $greet (canon lift (core func $i "greet")))
  (export "greet" (func $greet)))
