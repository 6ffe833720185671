;; Hostile test tool `twomem`: a component of two core modules, each with
;; its own linear memory. `call` grows each memory by 640 pages (40 MiB) and
;; traps if either growth is refused, as Rust's allocator does. Under a
;; per-memory limit of 64 MiB both growths fit; under a 64 MiB total they
;; cannot. No Rust toolchain emits two memories, so it is written by hand.
(component
  (core module $second_module
    (memory (export "memory") 0)
    (func (export "grow") (param i32) (result i32)
      (memory.grow (local.get 0))))
  (core module $main_module
    (import "second" "grow" (func $grow_second (param i32) (result i32)))
    (memory (export "memory") 1)
    ;; Strings of `describe` and the result, at fixed addresses.
    (data (i32.const 1024) "twomem")
    (data (i32.const 1040) "Grows two linear memories by 40 MiB each.")
    (data (i32.const 1088) "0.1.0")
    (data (i32.const 1104) "{\22type\22:\22object\22}")
    (data (i32.const 1136) "{\22grown_mb\22:80}")
    ;; A bump allocator for the strings the host passes in.
    (global $bump (mut i32) (i32.const 16384))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p
        (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    ;; metadata { name, description, version, input-schema,
    ;; output-schema: option<string>, effect } at 3072, canonical ABI layout.
    (func (export "describe") (result i32)
      (i32.store (i32.const 3072) (i32.const 1024))
      (i32.store (i32.const 3076) (i32.const 6))
      (i32.store (i32.const 3080) (i32.const 1040))
      (i32.store (i32.const 3084) (i32.const 41))
      (i32.store (i32.const 3088) (i32.const 1088))
      (i32.store (i32.const 3092) (i32.const 5))
      (i32.store (i32.const 3096) (i32.const 1104))
      (i32.store (i32.const 3100) (i32.const 17))
      (i32.store8 (i32.const 3104) (i32.const 0))
      (i32.store8 (i32.const 3116) (i32.const 0))
      (i32.const 3072))
    ;; call(ctx, input) -> result<string, tool-error>, returned at 2048.
    (func (export "call") (param i32 i32 i32 i64 i32 i32) (result i32)
      (if (i32.eq (memory.grow (i32.const 640)) (i32.const -1))
        (then unreachable))
      (if (i32.eq (call $grow_second (i32.const 640)) (i32.const -1))
        (then unreachable))
      (i32.store8 (i32.const 2048) (i32.const 0))
      (i32.store (i32.const 2052) (i32.const 1136))
      (i32.store (i32.const 2056) (i32.const 15))
      (i32.const 2048)))
  (core instance $second (instantiate $second_module))
  (core instance $main
    (instantiate $main_module (with "second" (instance $second))))

  (type $effect (enum "pure" "read-only" "idempotent" "side-effecting"))
  (export $effect_e "effect" (type $effect))
  (type $metadata (record
    (field "name" string)
    (field "description" string)
    (field "version" string)
    (field "input-schema" string)
    (field "output-schema" (option string))
    (field "effect" $effect_e)))
  (export $metadata_e "metadata" (type $metadata))
  (type $ctx (record
    (field "idempotency-key" string)
    (field "attempt" u32)
    (field "deadline-ms" u64)))
  (export $ctx_e "call-context" (type $ctx))
  (type $error (variant
    (case "invalid-input" string)
    (case "failed" string)
    (case "transient" string)))
  (export $error_e "tool-error" (type $error))

  (func $describe (result $metadata_e)
    (canon lift (core func $main "describe") (memory (core memory $main "memory"))))
  (func $call (param "ctx" $ctx_e) (param "input" string)
    (result (result string (error $error_e)))
    (canon lift (core func $main "call")
      (memory (core memory $main "memory"))
      (realloc (core func $main "cabi_realloc"))))
  (export "describe" (func $describe))
  (export "call" (func $call)))
