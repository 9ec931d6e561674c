// System V IPC cleanup over a simulated kernel table that behaves like XNU's
// IPCS sysctls (EINVAL for a wrong descriptor size, ENOENT past the end).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupSysvIpc, decodeIpcPerm, encodeIpcsCommand, ipcId, listSysvObjects, type SysvKind, type SysvPrimitives } from '../../../backends/darwin/sysv-ipc.js';

interface Slot {
  uid: number;
  key: number;
  seq: number;
}
const SIZES: Record<SysvKind, number> = { shm: 76, sem: 72, msg: 116 };

function perm(s: Slot): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(s.uid, 0);
  b.writeUInt32LE(s.uid, 8);
  b.writeUInt16LE(0o600, 16);
  b.writeUInt16LE(s.seq, 18);
  b.writeInt32LE(s.key, 20);
  return b;
}

function fakeKernel(tables: Record<SysvKind, Array<Slot | null>>) {
  const log: string[] = [];
  const prim: SysvPrimitives = {
    ipcsIter(kind, cursor, datalen) {
      if (datalen !== SIZES[kind]) return { rc: 22, cursor, data: Buffer.alloc(datalen) };
      const t = tables[kind];
      let i = cursor;
      while (i < t.length && !t[i]) i++;
      if (i >= t.length) return { rc: 2, cursor, data: Buffer.alloc(datalen) };
      const data = Buffer.alloc(datalen);
      perm(t[i]!).copy(data);
      return { rc: 0, cursor: i + 1, data };
    },
    get(kind, key) {
      const i = tables[kind].findIndex((s) => s?.key === key);
      return i < 0 ? -1 : ipcId(i, tables[kind][i]!.seq);
    },
    stat(kind, id) {
      const s = tables[kind][id & 0xffff];
      return s && s.seq === id >>> 16 ? perm(s) : null;
    },
    remove(kind, id) {
      log.push(`${kind} ${id}`);
      tables[kind][id & 0xffff] = null;
      return 0;
    },
  };
  return { prim, log };
}

describe('System V IPC', () => {
  test('the command and ipc_perm layouts', () => {
    const c = encodeIpcsCommand(0x2, 5, 76, 0xdeadbeefn);
    assert.equal(c.toString('hex'), '01000000' + '02000000' + '05000000' + '4c000000' + 'efbeadde00000000');
    assert.deepEqual(decodeIpcPerm(perm({ uid: 301, key: 0x1234, seq: 3 })), { uid: 301, gid: 0, cuid: 301, cgid: 0, mode: 0o600, seq: 3, key: 0x1234 });
    assert.equal(ipcId(5, 3), 0x30005);
  });

  test('descriptor sizes are probed; every object of every kind is listed', () => {
    const k = fakeKernel({
      shm: [null, { uid: 301, key: 11, seq: 1 }, { uid: 501, key: 12, seq: 0 }],
      sem: [{ uid: 301, key: 0, seq: 4 }],
      msg: [],
    });
    const all = listSysvObjects(k.prim);
    assert.deepEqual(
      all.map((o) => [o.kind, o.index, o.perm.uid, o.perm.key]),
      [
        ['shm', 1, 301, 11],
        ['shm', 2, 501, 12],
        ['sem', 0, 301, 0],
      ],
    );
  });

  test("cleanup removes the build user's objects only, private ones by computed id", () => {
    const k = fakeKernel({
      shm: [null, { uid: 301, key: 11, seq: 1 }, { uid: 501, key: 12, seq: 0 }],
      sem: [{ uid: 301, key: 0, seq: 4 }],
      msg: [{ uid: 301, key: 99, seq: 0 }],
    });
    const r = cleanupSysvIpc(k.prim, 301);
    assert.deepEqual(k.log, [`shm ${0x10001}`, `sem ${0x40000}`, 'msg 0']);
    assert.equal(r.removed.length, 3);
    assert.deepEqual(r.failed, []);
    assert.deepEqual(listSysvObjects(k.prim).map((o) => o.perm.uid), [501]);
  });

  test('a slot reused between listing and removal is left alone', () => {
    const k = fakeKernel({ shm: [{ uid: 301, key: 0, seq: 1 }], sem: [], msg: [] });
    const stat = k.prim.stat;
    k.prim.stat = (kind, id) => {
      // someone else's segment took the slot
      const b = stat(kind, id);
      if (b) b.writeUInt32LE(999, 0);
      return b;
    };
    const r = cleanupSysvIpc(k.prim, 301);
    assert.deepEqual(k.log, []);
    assert.equal(r.failed[0]?.reason, 'slot now belongs to uid 999 key 0');
  });
});
