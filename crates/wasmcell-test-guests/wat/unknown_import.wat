;; Imports a function no WASI host provides.
(module
  (import "env" "launch_missiles" (func $f))
  (memory (export "memory") 1)
  (func (export "_start") (call $f)))
