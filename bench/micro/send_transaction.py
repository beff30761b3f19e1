#!/usr/bin/env python3
# The embedded send's transaction replayed with Python's sqlite3 (the tables, keys and statements
# of sinks/src/embedded/{sequencer,log,history}.rs), to see what each statement costs: CPU time
# of the process per send. bench/README.md ("What each statement of a send costs") has results.
#
# usage: send_transaction.py VARIANT SENDS_PER_TRANSACTION [SENDS]
#   VARIANT: base (the whole send) | noreceipt | nohist | nomember (no read-marker update) |
#            norecords (no log record) | nolookup | nocontent (receipt without the text) |
#            notime (history without its time index) | rowid (history as a rowid table)
#   env: PS page size (4096), CS cache_size (-8000), MM mmap_size (268435456)
# It writes /tmp/sq/send.db.
import sqlite3, time, os, uuid, random, sys, json
variant=sys.argv[1]; B=int(sys.argv[2]); N=int(sys.argv[3]) if len(sys.argv)>3 else 30000
R=64; U=256
os.makedirs('/tmp/sq', exist_ok=True)
p='/tmp/sq/send.db'
for s in ('','-wal','-shm'):
    try: os.remove(p+s)
    except FileNotFoundError: pass
c=sqlite3.connect(p, isolation_level=None)
c.execute('pragma page_size=%d'%int(os.environ.get('PS','4096'))); c.execute('pragma journal_mode=wal'); c.execute('pragma synchronous=full'); c.execute('pragma cache_size=%d'%int(os.environ.get('CS','-8000'))); c.execute('pragma mmap_size=%d'%int(os.environ.get('MM','268435456')))
c.executescript('''
CREATE TABLE rooms(id TEXT PRIMARY KEY, name TEXT, last_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE memberships(room_id TEXT NOT NULL, user_id TEXT NOT NULL, last_read_seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(room_id,user_id)) WITHOUT ROWID;
CREATE TABLE records(topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL, payload BLOB NOT NULL, ts INTEGER NOT NULL, headers TEXT, PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID;
''')
if True:
    c.executescript('''
CREATE TABLE message_receipts(room_id TEXT NOT NULL, user_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, message_id TEXT NOT NULL, seq INTEGER NOT NULL, content TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY(room_id, user_id, client_msg_id)) WITHOUT ROWID;
''')
if variant=='rowid':
    c.executescript('''
CREATE TABLE messages(room_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL, username TEXT NOT NULL, content TEXT NOT NULL, edited INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, client_msg_id TEXT);
CREATE UNIQUE INDEX messages_by_seq ON messages(room_id, seq);
CREATE UNIQUE INDEX messages_by_id ON messages(id);
CREATE INDEX messages_by_time ON messages(room_id, created_at);
''')
else:
    c.executescript('''
CREATE TABLE messages(room_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL, username TEXT NOT NULL, content TEXT NOT NULL, edited INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, client_msg_id TEXT, PRIMARY KEY(room_id, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_id ON messages(id);
''')
    if variant!='notime':
        c.execute('CREATE INDEX messages_by_time ON messages(room_id, created_at)')
if variant=='clientidx':
    c.execute('CREATE UNIQUE INDEX messages_by_client ON messages(room_id, user_id, client_msg_id) WHERE client_msg_id IS NOT NULL')
rooms=[str(uuid.uuid4()) for _ in range(R)]
users=[str(uuid.uuid4()) for _ in range(U)]
for r in rooms:
    c.execute('insert into rooms(id,name) values(?,?)',(r,r[:8]))
    for u in users: c.execute('insert into memberships(room_id,user_id) values(?,?)',(r,u))
content='2026-11-27T16:00:00.000000Z '+'x'*70
payload=os.urandom(300)
# time-ordered ids like UUIDv7: a counter prefix
ctr=[0]
def v7():
    ctr[0]+=1
    return '%012x-7000-8000-%012x'%(int(time.time()*1000), ctr[0])
seqs={r:0 for r in rooms}; offs=[0]*4
t0=time.process_time(); w0=time.time()
for b in range(N//B):
    c.execute('begin immediate')
    for i in range(B):
        r=rooms[random.randrange(R)]; u=users[random.randrange(U)]
        last=seqs[r] if variant=='nolookup' else c.execute('SELECT r.last_seq FROM rooms r JOIN memberships m ON m.room_id = r.id AND m.user_id = ? WHERE r.id = ?',(u,r)).fetchone()[0]
        seq=last+1; seqs[r]=seq; mid=v7(); cid='c%d'%(b*B+i); now=int(time.time()*1000)
        if variant in ('base','notime','rowid','nomember','norecords','nohist','nolookup'):
            c.execute('INSERT OR IGNORE INTO message_receipts VALUES (?,?,?,?,?,?,?)',(r,u,cid,mid,seq,content,now))
        elif variant=='noreceipt': pass
        elif variant=='nocontent':
            c.execute('INSERT OR IGNORE INTO message_receipts VALUES (?,?,?,?,?,?,?)',(r,u,cid,mid,seq,'',now))
        c.execute('UPDATE rooms SET last_seq = max(last_seq, ?) WHERE id = ?',(seq,r))
        if variant!='nomember': c.execute('UPDATE memberships SET last_read_seq = max(last_read_seq, ?) WHERE room_id = ? AND user_id = ?',(seq,r,u))
        part=hash(r)%4; off=offs[part]; offs[part]+=1
        if variant!='norecords': c.execute('INSERT INTO records VALUES (?,?,?,?,?,?,?)',('chat.room-events.v1',part,off,r,payload,now,None))
        if variant!='nohist': c.execute('INSERT OR IGNORE INTO messages(room_id,seq,id,user_id,username,content,created_at,updated_at,client_msg_id) VALUES (?,?,?,?,?,?,?,?,?)',(r,seq,mid,u,'user',content,now,now,cid))
    c.execute('commit')
cpu=(time.process_time()-t0)/N*1e6; wall=(time.time()-w0)/N*1e6
print('%-10s B=%-4d cpu %.1f us/send  wall %.1f us/send'%(variant,B,cpu,wall))
