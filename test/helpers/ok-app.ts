/** A pod's app for waypoint tests: answers every request `ok <path>`; closed when the test ends. */
import * as http from 'node:http';
import type { TestContext } from 'node:test';

export async function startOkApp(t: TestContext, host: string, port: number): Promise<http.Server> {
  const app = http.createServer((req, res) => {
    req.resume();
    res.end(`ok ${req.url}`);
  });
  await new Promise<void>((r) => app.listen(port, host, () => r()));
  t.after(() => {
    app.closeAllConnections();
    app.close();
  });
  return app;
}
