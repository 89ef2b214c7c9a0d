/** koffi's layout of the structs shared with BPF must equal the C layout of bpf/include/types.h. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SHARED_STRUCTS, koffiLayout, shim, trimMallocHeap } from '../../../native/bindings.js';

function shimOrReason(): string | undefined {
  try {
    shim();
    return undefined;
  } catch (e) {
    return `native shim unavailable: ${(e as Error).message}`;
  }
}

const skip = shimOrReason();

for (const [name, type] of Object.entries(SHARED_STRUCTS)) {
  test(`struct ${name} has the same size and member offsets in koffi and C`, { skip }, () => {
    const k = koffiLayout(type);
    assert.equal(k.size, shim().layoutSizeof(name), `sizeof(struct ${name})`);
    assert.ok(Object.keys(k.offsets).length >= 3, 'members are listed');
    for (const [field, offset] of Object.entries(k.offsets)) {
      const c = shim().layoutOffsetof(name, field);
      assert.notEqual(c, -1, `C knows ${name}.${field}`);
      assert.equal(offset, c, `offsetof(struct ${name}, ${field})`);
    }
  });
}

test('the layout helpers answer -1 for unknown names, so a typo can not pass', { skip }, () => {
  assert.equal(shim().layoutSizeof('ambit_nope'), -1);
  assert.equal(shim().layoutOffsetof('ambit_orig_dst', 'nope'), -1);
});

test('trimMallocHeap hands freed heap memory back without failing', () => {
  // glibc's malloc_trim: nothing to observe but that the call is bound and returns.
  assert.doesNotThrow(() => trimMallocHeap());
});
