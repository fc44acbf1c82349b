{
  "targets": [
    {
      "target_name": "flint",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/eventfd.cc",
        "native/fd.cc",
        "native/fdpass.cc",
        "native/mount.cc",
        "native/peercred.cc",
        "native/poller.cc",
        "native/process.cc",
        "native/pty.cc",
        "native/socket.cc",
        "native/vsock.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
