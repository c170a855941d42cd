// threadbox/client as one ES module (dist/client/index.js) for Node and browsers; its dependency stays external.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../../dist/client', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    minify: false,
    lib: { entry: fileURLToPath(new URL('./index.ts', import.meta.url)), formats: ['es'], fileName: () => 'index.js' },
    rolldownOptions: { external: [/^eventsource-parser/] },
  },
});
