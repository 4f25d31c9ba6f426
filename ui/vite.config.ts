import { defineConfig } from "vite";

// `cargo build` (crates/server/build.rs) sets OMNITRAIL_UI_OUT to a folder under its
// OUT_DIR so the build never writes into the source tree; `npm run build` alone uses dist/.
// OMNITRAIL_API proxies the API to a running `omnitrail serve` during `npm run dev`.
const outDir = process.env.OMNITRAIL_UI_OUT ?? "dist";
const api = process.env.OMNITRAIL_API ?? "http://127.0.0.1:7878";

export default defineConfig({
  base: "/",
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: "assets",
    chunkSizeWarningLimit: 1500,
    sourcemap: false,
  },
  server: {
    proxy: { "/api": api, "/healthz": api },
  },
});
