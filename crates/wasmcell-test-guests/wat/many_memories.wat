;; Eight linear memories of 48 MiB (768 pages) each: every one is under a 256 MiB limit, all of
;; them together (384 MiB) are not. Exits 0 if it was ever instantiated.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory $m0 (export "memory") 768) (memory $m1 768) (memory $m2 768) (memory $m3 768)
  (memory $m4 768) (memory $m5 768) (memory $m6 768) (memory $m7 768)
  (func (export "_start")
    ;; Touch each memory so that the pages are really used.
    (i32.store $m0 (i32.const 0) (i32.const 1))
    (i32.store $m7 (i32.const 0) (i32.const 1))
    (call $proc_exit (i32.const 0))))
