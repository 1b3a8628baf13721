;; Grows a table by 2^31 - 1 elements (16 GiB of host memory at 8 bytes an element): exits 3 when
;; table.grow refuses, 0 when it is granted.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (func (export "_start")
    (if (i32.eq (table.grow $t (ref.null func) (i32.const 0x7fffffff)) (i32.const -1))
      (then (call $proc_exit (i32.const 3))))
    (call $proc_exit (i32.const 0))))
