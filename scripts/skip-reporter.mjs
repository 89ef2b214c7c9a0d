// A node:test reporter that writes one JSON line per skipped test (name, file, reason), so
// run-tests.mjs can list what a run did not test and fail the run where skips are not allowed.
export default async function* skipReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const skip = event.data.skip;
    if (skip === undefined || skip === false) continue;
    yield JSON.stringify({ name: event.data.name, file: event.data.file ?? '', reason: typeof skip === 'string' ? skip : '' }) + '\n';
  }
}
