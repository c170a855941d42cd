// The house drawn from imports: which room may import which. Checked by test/architecture.test.ts.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', comment: 'every import graph is a tree of rooms: no cycle', from: {}, to: { circular: true } },
    {
      name: 'workflows-behind-the-worker',
      severity: 'error',
      comment: 'only the worker bundles workflows/ (by path); the API and activities share src/contract/ with them instead',
      from: { pathNot: '^(workflows|test)/' },
      to: { path: '^workflows/' },
    },
    {
      name: 'workflows-import-the-contract-only',
      severity: 'error',
      comment: 'workflow code is deterministic: it may import the contract and the activities’ types, nothing else of ours',
      from: { path: '^workflows/' },
      to: { path: '^src/', pathNot: '^src/contract/' },
    },
    {
      name: 'contract-is-the-floor',
      severity: 'error',
      comment: 'src/contract/ is shared by every room, so it imports none of them',
      from: { path: '^src/contract/' },
      to: { path: '^(src|activities|workflows|test|bench|testkit|scripts)/', pathNot: '^src/contract/' },
    },
    {
      name: 'store-is-below-the-api-and-agents',
      severity: 'error',
      comment: 'the store knows tables, not the API, the agents or the activities',
      from: { path: '^src/store/' },
      to: { path: '^(src/api|src/agent|activities|workflows)/' },
    },
    {
      name: 'protocols-are-pure-encoders',
      severity: 'error',
      comment: 'src/protocols/ turns the contract into wire formats (the AI SDK UI-message stream): no store, no Temporal, no API',
      from: { path: '^src/protocols/' },
      to: { path: '^(src|activities|workflows)/', pathNot: '^src/(contract|protocols)/' },
    },
    {
      name: 'client-runs-anywhere',
      severity: 'error',
      comment: 'threadbox/client runs in browsers: it takes types from the contract and the route schemas, and nothing else of ours',
      from: { path: '^src/client/' },
      to: { path: '^(src|activities|workflows)/', pathNot: '^src/(contract|client)/|^src/api/schemas\\.ts$' },
    },
    {
      name: 'product-does-not-import-tests',
      severity: 'error',
      from: { path: '^(src|activities|workflows|scripts)/' },
      to: { path: '^(test|bench|testkit)/' },
    },
    {
      name: 'tests-and-bench-share-only-the-testkit',
      severity: 'error',
      comment: 'what test/ and bench/ share lives in testkit/',
      from: { path: '^test/' },
      to: { path: '^bench/' },
    },
    { name: 'bench-does-not-import-tests', severity: 'error', from: { path: '^bench/' }, to: { path: '^test/' } },
    { name: 'testkit-does-not-import-tests-or-bench', severity: 'error', from: { path: '^testkit/' }, to: { path: '^(test|bench)/' } },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|\\.old-workflows|dist)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.js', '.json'] },
  },
};
