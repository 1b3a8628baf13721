;; A wasi:cli command component of eight core instances, each with a 48 MiB linear memory: each
;; is under a 256 MiB limit, all of them together (384 MiB) are not. `run` returns ok.
(component
  (core module $memory (memory 768))
  (core instance (instantiate $memory))
  (core instance (instantiate $memory))
  (core instance (instantiate $memory))
  (core instance (instantiate $memory))
  (core instance (instantiate $memory))
  (core instance (instantiate $memory))
  (core instance (instantiate $memory))
  (core instance (instantiate $memory))
  (core module $main (func (export "run") (result i32) (i32.const 0)))
  (core instance $main (instantiate $main))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))
