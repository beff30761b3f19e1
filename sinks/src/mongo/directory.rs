//! `Directory` on MongoDB: every method is one single-document write (see the module docs).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::events::quoted_author;
use livechat_core::model::*;
use livechat_core::ports::{ContentKey, Directory, MessageEventsFn, NewMessage, Placed};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::options::FindOptions;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::convert::{self, ms};
use super::{
    db_err, id, insert_once, insert_outbox, insert_unique, is_duplicate, live, live_id, relayed,
    with_outbox, MongoDirectory,
};

/// How many times a send retries when other writers keep taking the seq it tried.
const SEQ_ATTEMPTS: usize = 64;

/// A literal pattern for `$regex`: every character that is not a letter or digit is escaped,
/// so user text never acts as a pattern (the original's search passed user text to a regex).
fn literal_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `_id` of a send's document: (room, user, client_msg_id), or the message id when there is
/// none, so a retried send collides on the primary key (indexed by every MongoDB-wire server).
fn dedup_key(msg: &NewMessage) -> String {
    match &msg.client_msg_id {
        Some(cid) => format!("{}:{}:{cid}", msg.room_id, msg.user_id),
        None => msg.message_id.to_string(),
    }
}

impl MongoDirectory {
    /// Shows a hidden notification that quotes `author`, unless the author's account was erased.
    /// The processor that stores it read the quote before an erasure may have swept the
    /// author's notifications; so the erasure's mark is read after the insert, and the
    /// notification is shown only while its payload is not the sweep's "{}". Either the mark is
    /// there (it stays hidden, its quote dropped), or the erasure marks after this read and
    /// sweeps after the insert: before the show (which then finds "{}") or after it (which hides
    /// it again). An erasure marks the account before it sweeps. (Not the content key's absence:
    /// a store being rebuilt by a replay holds no keys, and erased no one.)
    async fn show_unless_erased(&self, nid: Uuid, author: UserId) -> StoreResult<()> {
        let erased = self
            .coll("erased_users")
            .find_one(doc! { "_id": id(author) })
            .await
            .map_err(db_err)?
            .is_some();
        let (filter, update) = if !erased {
            (
                doc! { "_id": id(nid), "pending": true, "payload": { "$ne": "{}" } },
                doc! { "$set": { "deleted": false }, "$unset": { "pending": "" } },
            )
        } else {
            (
                doc! { "_id": id(nid), "pending": true },
                doc! { "$set": { "payload": "{}" }, "$unset": { "pending": "" } },
            )
        };
        self.coll("notifications")
            .update_one(filter, update)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn rooms_where(
        &self,
        filter: Document,
        sort: Document,
        limit: u32,
    ) -> StoreResult<Vec<Room>> {
        let options = FindOptions::builder()
            .projection(convert::room_projection())
            .sort(sort)
            .limit(i64::from(limit))
            .build();
        let docs = self.find_all("rooms", filter, options).await?;
        docs.into_iter().map(convert::room).collect()
    }

    async fn users_where(&self, filter: Document) -> StoreResult<Vec<User>> {
        let options = FindOptions::builder()
            .projection(doc! { "_outbox": 0 })
            .build();
        let docs = self.find_all("users", filter, options).await?;
        docs.into_iter().map(convert::user).collect()
    }

    async fn people(&self, filter: Document) -> StoreResult<Vec<convert::RoomPeople>> {
        let options = FindOptions::builder()
            .projection(doc! { "name": 1, "members": 1, "requests": 1 })
            .build();
        let docs = self.find_all("rooms", filter, options).await?;
        docs.into_iter().map(convert::room_people).collect()
    }

    /// Public views of join requests, with requester names ("Unknown" for a deleted user).
    async fn public_requests(
        &self,
        rooms: Vec<convert::RoomPeople>,
        only_user: Option<&str>,
    ) -> StoreResult<Vec<JoinRequestPublic>> {
        let mut reqs = Vec::new();
        for room in &rooms {
            for req_id in room.requests.keys() {
                if let Some(j) = convert::join_request(room, req_id)? {
                    if only_user.is_none_or(|u| u == j.user_id.to_string()) {
                        reqs.push((j, room.name.clone()));
                    }
                }
            }
        }
        let ids: Vec<Bson> = reqs.iter().map(|(j, _)| id(j.user_id).into()).collect();
        let names: HashMap<Uuid, String> = self
            .users_where(doc! { "_id": { "$in": ids } })
            .await?
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect();
        Ok(reqs
            .into_iter()
            .map(|(j, room_name)| JoinRequestPublic {
                id: j.id,
                message: j.message,
                username: names
                    .get(&j.user_id)
                    .cloned()
                    .unwrap_or_else(|| "Unknown".into()),
                room_name,
                room_id: j.room_id,
                user_id: j.user_id,
                created_at: j.created_at,
            })
            .collect())
    }

    /// The stored receipt of an earlier send with the same dedup key, if any.
    async fn earlier_send(&self, key: &str) -> StoreResult<Option<SendReceipt>> {
        self.coll("messages")
            .find_one(doc! { "_id": key })
            .projection(doc! { "message_id": 1, "seq": 1, "content": 1, "created_at": 1 })
            .await
            .map_err(db_err)?
            .map(convert::receipt)
            .transpose()
    }

    /// A room's `last_seq` and `uid`'s member entry, read by `_id` alone (the lookup every
    /// MongoDB-wire server indexes); None if the room is gone or `uid` is not a member.
    async fn room_member(&self, room: &str, uid: &str) -> StoreResult<Option<(i64, Document)>> {
        let found = self
            .coll("rooms")
            .find_one(doc! { "_id": room })
            .projection(doc! { "last_seq": 1, "_gone": 1, format!("members.{uid}"): 1 })
            .await
            .map_err(db_err)?;
        Ok(found.and_then(|d| {
            if d.get_bool("_gone").unwrap_or(false) {
                return None;
            }
            let member = convert::member_of(&d, uid)?.clone();
            Some((d.get_i64("last_seq").unwrap_or(0), member))
        }))
    }

    /// The room's `last_seq` (0 when none).
    async fn last_seq(&self, room: &str) -> StoreResult<i64> {
        let r = self
            .coll("rooms")
            .find_one(doc! { "_id": room })
            .projection(doc! { "last_seq": 1 })
            .await
            .map_err(db_err)?;
        Ok(r.and_then(|d| d.get_i64("last_seq").ok()).unwrap_or(0))
    }
}

#[async_trait]
impl Directory for MongoDirectory {
    async fn create_user(&self, user: &User, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let d = insert_outbox(convert::user_doc(user), &outbox);
        insert_unique(&self.coll("users"), d, "username").await?;
        self.queued("users", id(user.id));
        Ok(())
    }

    async fn user_by_id(&self, uid: UserId) -> StoreResult<Option<User>> {
        Ok(self.users_where(doc! { "_id": id(uid) }).await?.pop())
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        // The account of exactly that name, else the one whose key it shares.
        if let Some(u) = self.users_where(doc! { "username": username }).await?.pop() {
            return Ok(Some(u));
        }
        let key = livechat_core::validate::username_key(username);
        Ok(self.users_where(doc! { "name_key": key }).await?.pop())
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<User>> {
        let ids: Vec<Bson> = ids.iter().map(|u| id(*u).into()).collect();
        self.users_where(doc! { "_id": { "$in": ids } }).await
    }

    async fn users_by_names(&self, names: &[String]) -> StoreResult<Vec<User>> {
        let mut out: Vec<User> = Vec::new();
        for name in names {
            if let Some(u) = self.user_by_name(name).await? {
                if !out.iter().any(|o| o.id == u.id) {
                    out.push(u);
                }
            }
        }
        Ok(out)
    }

    async fn touch_user(&self, uid: UserId, at: DateTime<Utc>) -> StoreResult<()> {
        self.update_doc(
            "users",
            doc! { "_id": id(uid) },
            doc! { "$set": { "last_active": ms(at) } },
        )
        .await?;
        Ok(())
    }

    async fn content_key(&self, uid: UserId) -> StoreResult<Option<ContentKey>> {
        let user = self
            .coll("users")
            .find_one(doc! { "_id": id(uid) })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db_err)?;
        if user.is_none() {
            return Ok(None);
        }
        // Made by inserting under the user's id: of two first uses at once, one insert wins and
        // both read its key back.
        let fresh = Binary {
            subtype: BinarySubtype::Generic,
            bytes: livechat_schemas::sealed::new_key().to_vec(),
        };
        insert_once(
            &self.coll("content_keys"),
            doc! { "_id": id(uid), "key": fresh },
        )
        .await?;
        Ok(self.content_keys(Some(&[uid])).await?.pop().map(|(_, k)| k))
    }

    async fn content_keys(
        &self,
        users: Option<&[UserId]>,
    ) -> StoreResult<Vec<(UserId, ContentKey)>> {
        let filter = match users {
            Some(ids) => {
                let ids: Vec<Bson> = ids.iter().map(|u| id(*u).into()).collect();
                doc! { "_id": { "$in": ids } }
            }
            None => doc! {},
        };
        let docs = self
            .find_all("content_keys", filter, FindOptions::default())
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let user = d.get_str("_id").ok()?.parse().ok()?;
                let key = d.get_binary_generic("key").ok()?.clone().try_into().ok()?;
                Some((user, key))
            })
            .collect())
    }

    async fn erase_user(&self, uid: UserId, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        // The mark first (a notification quoting the account, stored late by a processor, is
        // not shown: see `show_unless_erased`), then the key: from then on nothing the account
        // wrote opens, whatever step a crash interrupts; each step is idempotent, and running the
        // erasure again finishes it.
        insert_once(&self.coll("erased_users"), doc! { "_id": id(uid) }).await?;
        self.coll("content_keys")
            .delete_one(doc! { "_id": id(uid) })
            .await
            .map_err(db_err)?;
        for request in self.join_requests_of_user(uid).await? {
            self.update_doc(
                "rooms",
                doc! { "_id": id(request.room_id) },
                doc! { "$unset": { format!("requests.{}", request.id): "" } },
            )
            .await?;
        }
        self.coll("notifications")
            .update_many(
                // Hidden ones too: one still waiting to be shown must not be (see
                // `show_unless_erased`).
                doc! { "$or": [{ "user_id": id(uid) }, { "source_id": id(uid) }] },
                doc! { "$set": { "deleted": true, "payload": "{}" } },
            )
            .await
            .map_err(db_err)?;
        // The sends' receipts keep their seqs (a retry still finds its send), not the text.
        self.coll("messages")
            .update_many(
                doc! { "user_id": id(uid) },
                doc! { "$set": { "content": Bson::Null } },
            )
            .await
            .map_err(db_err)?;
        self.enqueue(outbox).await?;
        self.coll("users")
            .delete_one(doc! { "_id": id(uid) })
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn create_room(&self, room: &Room, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let d = insert_outbox(convert::room_doc(room), &outbox);
        insert_unique(&self.coll("rooms"), d, "room name").await?;
        self.queued("rooms", id(room.id));
        Ok(())
    }

    async fn room(&self, rid: RoomId) -> StoreResult<Option<Room>> {
        Ok(self.rooms_where(live_id(id(rid)), doc! {}, 1).await?.pop())
    }

    async fn update_room(&self, room: &Room, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        let filter = live_id(id(room.id));
        let update = with_outbox(
            doc! { "$set": {
                "description": room.description.clone(),
                "is_public": room.is_public,
                "unlisted": room.unlisted,
                "updated_at": ms(room.updated_at),
            } },
            &outbox,
        );
        self.update_doc("rooms", filter, update).await?;
        self.queued("rooms", id(room.id));
        Ok(())
    }

    async fn delete_room(&self, rid: RoomId, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        // The tombstone keeps the records until the relay has them; its name is freed at once.
        let filter = live_id(id(rid));
        let update = with_outbox(
            doc! { "$set": {
                "_gone": true,
                "name": format!("\u{0}deleted:{rid}"),
                "member_ids": [], "members": {},
                "request_ids": [], "request_users": [], "requests": {},
            } },
            &outbox,
        );
        self.update_doc("rooms", filter, update).await?;
        self.coll("thread_reads")
            .delete_many(doc! { "room_id": id(rid) })
            .await
            .map_err(db_err)?;
        self.coll("thread_follows")
            .delete_many(doc! { "room_id": id(rid) })
            .await
            .map_err(db_err)?;
        // Send receipts of the room are no longer needed (those still holding records stay
        // until relayed).
        self.coll("messages")
            .delete_many({
                let mut f = relayed();
                f.insert("room_id", id(rid));
                f
            })
            .await
            .map_err(db_err)?;
        self.queued("rooms", id(rid));
        Ok(())
    }

    async fn rooms_of_user(&self, user: UserId) -> StoreResult<Vec<(Room, Role, i64)>> {
        let uid = id(user);
        let mut filter = live();
        filter.insert("member_ids", &uid);
        let mut projection = convert::room_projection();
        projection.insert(format!("members.{uid}"), 1);
        let options = FindOptions::builder()
            .projection(projection)
            .sort(doc! { "updated_at": -1 })
            .build();
        let docs = self.find_all("rooms", filter, options).await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            let (role, read) = match convert::member_of(&d, &uid) {
                Some(m) => (convert::role_of(m), m.get_i64("read").unwrap_or(0)),
                None => (Role::Member, 0),
            };
            out.push((convert::room(d)?, role, read));
        }
        Ok(out)
    }

    async fn top_rooms(&self, limit: u32, only_public: bool) -> StoreResult<Vec<Room>> {
        let mut filter = live();
        filter.insert("unlisted", doc! { "$ne": true });
        if only_public {
            filter.insert("is_public", true);
        }
        self.rooms_where(
            filter,
            doc! { "participants_count": -1, "created_at": -1 },
            limit,
        )
        .await
    }

    async fn search_rooms(&self, text: &str, limit: u32) -> StoreResult<Vec<Room>> {
        let pattern = literal_regex(text);
        let mut filter = live();
        filter.insert("unlisted", doc! { "$ne": true });
        filter.insert(
            "$or",
            vec![
                doc! { "name": { "$regex": &pattern, "$options": "i" } },
                doc! { "description": { "$regex": &pattern, "$options": "i" } },
            ],
        );
        self.rooms_where(filter, doc! { "created_at": -1 }, limit)
            .await
    }

    async fn read_marker(&self, user: UserId, room: RoomId) -> StoreResult<Option<i64>> {
        Ok(self
            .room_member(&id(room), &id(user))
            .await?
            .map(|(_, member)| member.get_i64("read").unwrap_or(0)))
    }

    /// One document per (user, room, thread), raised with `$max` (atomic on one document).
    async fn set_thread_read(
        &self,
        user: UserId,
        room: RoomId,
        root_seq: i64,
        seq: i64,
    ) -> StoreResult<i64> {
        let key = format!("{user}:{room}:{root_seq}");
        self.coll("thread_reads")
            .update_one(
                doc! { "_id": &key },
                doc! {
                    "$max": { "read": seq },
                    "$setOnInsert": { "user_id": id(user), "room_id": id(room), "root_seq": root_seq },
                },
            )
            .upsert(true)
            .await
            .map_err(db_err)?;
        let stored = self
            .coll("thread_reads")
            .find_one(doc! { "_id": &key })
            .await
            .map_err(db_err)?;
        Ok(stored.and_then(|d| d.get_i64("read").ok()).unwrap_or(seq))
    }

    /// One document per (room, thread, user): the choice is set whole, never read-modify-write.
    async fn set_thread_follow(
        &self,
        user: UserId,
        room: RoomId,
        root_seq: i64,
        follow: bool,
    ) -> StoreResult<()> {
        self.coll("thread_follows")
            .update_one(
                doc! { "_id": format!("{room}:{root_seq}:{user}") },
                doc! { "$set": {
                    "room_id": id(room), "root_seq": root_seq, "user_id": id(user), "follow": follow,
                } },
            )
            .upsert(true)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn thread_follows(
        &self,
        room: RoomId,
        root_seq: i64,
    ) -> StoreResult<std::collections::HashMap<UserId, bool>> {
        let found = self
            .find_all(
                "thread_follows",
                doc! { "room_id": id(room), "root_seq": root_seq },
                Default::default(),
            )
            .await?;
        Ok(found
            .iter()
            .filter_map(|d| {
                let user = Uuid::parse_str(d.get_str("user_id").ok()?).ok()?;
                Some((user, d.get_bool("follow").ok()?))
            })
            .collect())
    }

    async fn thread_reads(
        &self,
        user: UserId,
        room: RoomId,
        roots: &[i64],
    ) -> StoreResult<std::collections::HashMap<i64, i64>> {
        if roots.is_empty() {
            return Ok(Default::default());
        }
        let keys: Vec<String> = roots.iter().map(|r| format!("{user}:{room}:{r}")).collect();
        let found = self
            .find_all(
                "thread_reads",
                doc! { "_id": { "$in": keys } },
                Default::default(),
            )
            .await?;
        Ok(found
            .iter()
            .filter_map(|d| Some((d.get_i64("root_seq").ok()?, d.get_i64("read").ok()?)))
            .collect())
    }

    async fn membership(&self, room: RoomId, user: UserId) -> StoreResult<Option<Role>> {
        Ok(self
            .room_member(&id(room), &id(user))
            .await?
            .map(|(_, member)| convert::role_of(&member)))
    }

    async fn add_member(
        &self,
        room: RoomId,
        user: UserId,
        role: Role,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        let uid = id(user);
        let mut filter = live_id(id(room));
        filter.insert("member_ids", doc! { "$ne": &uid });
        let update = with_outbox(
            doc! {
                "$addToSet": { "member_ids": &uid },
                "$set": { format!("members.{uid}"): convert::member_entry(role) },
                "$inc": { "participants_count": 1_i64 },
            },
            &outbox,
        );
        let res = self.update_doc("rooms", filter, update).await?;
        self.queued("rooms", id(room));
        Ok(res.modified_count == 1)
    }

    async fn remove_member(
        &self,
        room: RoomId,
        user: UserId,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        let uid = id(user);
        let mut filter = live_id(id(room));
        filter.insert("member_ids", &uid);
        let update = with_outbox(
            doc! {
                "$pull": { "member_ids": &uid },
                "$unset": { format!("members.{uid}"): "" },
                "$inc": { "participants_count": -1_i64 },
            },
            &outbox,
        );
        let res = self.update_doc("rooms", filter, update).await?;
        self.queued("rooms", id(room));
        Ok(res.modified_count == 1)
    }

    async fn members(&self, room: RoomId) -> StoreResult<Vec<(User, Role)>> {
        let Some(people) = self.people(live_id(id(room))).await?.pop() else {
            return Ok(Vec::new());
        };
        let mut members: Vec<(&String, &convert::MemberDoc)> = people.members.iter().collect();
        members.sort_by_key(|(uid, m)| (m.joined_at, *uid));
        let ids: Vec<Bson> = members.iter().map(|(uid, _)| Bson::from(*uid)).collect();
        let users: HashMap<String, User> = self
            .users_where(doc! { "_id": { "$in": ids } })
            .await?
            .into_iter()
            .map(|u| (u.id.to_string(), u))
            .collect();
        Ok(members
            .into_iter()
            .filter_map(|(uid, m)| users.get(uid).map(|u| (u.clone(), m.role())))
            .collect())
    }

    async fn create_join_request(
        &self,
        req: &JoinRequest,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<()> {
        let (rid, uid) = (id(req.id), id(req.user_id));
        let mut filter = live_id(id(req.room_id));
        filter.insert("request_users", doc! { "$ne": &uid });
        let update = with_outbox(
            doc! {
                "$addToSet": { "request_ids": &rid, "request_users": &uid },
                "$set": { format!("requests.{rid}"): {
                    "user_id": &uid,
                    "message": req.message.clone(),
                    "created_at": ms(req.created_at),
                } },
            },
            &outbox,
        );
        let res = self.update_doc("rooms", filter, update).await?;
        if res.modified_count == 0 {
            return Err(StoreError::Conflict("join request".into()));
        }
        self.queued("rooms", id(req.room_id));
        Ok(())
    }

    async fn join_request(&self, req: Uuid) -> StoreResult<Option<JoinRequest>> {
        let rid = id(req);
        let mut filter = live();
        filter.insert("request_ids", &rid);
        match self.people(filter).await?.pop() {
            Some(room) => convert::join_request(&room, &rid),
            None => Ok(None),
        }
    }

    async fn join_requests_of_room(&self, room: RoomId) -> StoreResult<Vec<JoinRequestPublic>> {
        let mut out = self
            .public_requests(self.people(live_id(id(room))).await?, None)
            .await?;
        out.sort_by_key(|j| (j.created_at, j.id));
        Ok(out)
    }

    async fn join_requests_of_user(&self, user: UserId) -> StoreResult<Vec<JoinRequestPublic>> {
        let uid = id(user);
        let mut filter = live();
        filter.insert("request_users", &uid);
        let mut out = self
            .public_requests(self.people(filter).await?, Some(&uid))
            .await?;
        out.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        Ok(out)
    }

    async fn handle_join_request(
        &self,
        req: &JoinRequest,
        accept: bool,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        let (rid, uid) = (id(req.id), id(req.user_id));
        let base = || {
            let mut f = live_id(id(req.room_id));
            f.insert("request_ids", &rid);
            f
        };
        let handled = doc! {
            "$pull": { "request_ids": &rid, "request_users": &uid },
            "$unset": { format!("requests.{rid}"): "" },
        };
        if accept {
            // Accept and join in one update, unless the requester is already a member.
            let mut filter = base();
            filter.insert("member_ids", doc! { "$ne": &uid });
            let mut update = handled.clone();
            update.insert("$addToSet", doc! { "member_ids": &uid });
            update.insert(
                "$set",
                doc! { format!("members.{uid}"): convert::member_entry(Role::Member) },
            );
            update.insert("$inc", doc! { "participants_count": 1_i64 });
            let res = self
                .update_doc("rooms", filter, with_outbox(update, &outbox))
                .await?;
            if res.modified_count == 1 {
                self.queued("rooms", id(req.room_id));
                return Ok(true);
            }
        }
        let res = self
            .update_doc("rooms", base(), with_outbox(handled, &outbox))
            .await?;
        self.queued("rooms", id(req.room_id));
        Ok(res.modified_count == 1)
    }

    async fn send_message(
        &self,
        msg: NewMessage,
        events: MessageEventsFn,
        // Placed when this returns: a send started before the room's `last_seq` is raised
        // would try a seq already taken and have to move past it.
        _placed: Placed,
    ) -> StoreResult<Option<SendReceipt>> {
        let (rid, uid) = (id(msg.room_id), id(msg.user_id));
        let Some((last_seq, _)) = self.room_member(&rid, &uid).await? else {
            return Ok(None);
        };
        // A retried send is found when its insert collides on `_id` (no lookup up front).
        let key = dedup_key(&msg);
        // Seqs are taken by inserting under the unique (room_id, seq) index: the first free one
        // at or above `last_seq + 1` (every seq up to `last_seq` is taken, since it is raised
        // only after an insert). A taken seq moves us past it, never leaving a hole.
        let mut seq = last_seq + 1;
        for _ in 0..SEQ_ATTEMPTS {
            let records = events(seq).map_err(StoreError::Other)?;
            let d = insert_outbox(
                doc! {
                    "_id": &key,
                    "message_id": id(msg.message_id),
                    "room_id": &rid,
                    "seq": seq,
                    "user_id": &uid,
                    "content": msg.client_msg_id.as_ref().map(|_| msg.content.clone()),
                    "created_at": ms(msg.created_at),
                },
                &records,
            );
            match self.coll("messages").insert_one(d).await {
                Ok(_) => {
                    self.queued("messages", key);
                    // The room's newest seq and the author's read marker (their own message is
                    // read); `$max` keeps both monotonic whatever order sends land in.
                    self.update_doc(
                        "rooms",
                        doc! { "_id": &rid },
                        doc! { "$max": { "last_seq": seq, format!("members.{uid}.read"): seq } },
                    )
                    .await?;
                    return Ok(Some(SendReceipt {
                        message_id: msg.message_id,
                        seq,
                        created_at: msg.created_at,
                        content: msg.content.clone(),
                        duplicate: false,
                    }));
                }
                Err(e) if is_duplicate(&e) => {
                    // The same send, stored meanwhile (a concurrent retry)?
                    if let Some(earlier) = self.earlier_send(&key).await? {
                        return Ok(Some(earlier));
                    }
                    // No: the seq was taken. Past it, or past what the room has seen since.
                    seq = (seq + 1).max(self.last_seq(&rid).await? + 1);
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "room {rid}: no free seq after {SEQ_ATTEMPTS} attempts (too many concurrent writers)"
        )))
    }

    async fn insert_notification(&self, n: &Notification) -> StoreResult<bool> {
        let mut d = convert::notification_doc(n)?;
        let quoted = quoted_author(n);
        if quoted.is_some() {
            // Stored hidden, shown below unless its author's account was erased.
            d.insert("deleted", true);
            d.insert("pending", true);
        }
        let stored = insert_once(&self.coll("notifications"), d).await?;
        if let Some(author) = quoted {
            // Also after a duplicate: a crash may have left it hidden.
            self.show_unless_erased(n.id, author).await?;
        }
        Ok(stored)
    }

    async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: u32,
    ) -> StoreResult<Vec<Notification>> {
        let mut filter = live();
        filter.insert("user_id", id(user));
        filter.insert("deleted", doc! { "$ne": true });
        if unread_only {
            filter.insert("read", false);
        }
        let options = FindOptions::builder()
            .projection(doc! { "_outbox": 0 })
            .sort(doc! { "created_at": -1 })
            .limit(i64::from(limit))
            .build();
        let docs = self.find_all("notifications", filter, options).await?;
        docs.into_iter().map(convert::notification).collect()
    }

    async fn notification(&self, nid: Uuid) -> StoreResult<Option<Notification>> {
        let mut filter = live_id(id(nid));
        filter.insert("deleted", doc! { "$ne": true });
        self.coll("notifications")
            .find_one(filter)
            .projection(doc! { "_outbox": 0 })
            .await
            .map_err(db_err)?
            .map(convert::notification)
            .transpose()
    }

    async fn mark_notification_read(
        &self,
        nid: Uuid,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<()> {
        self.update_doc(
            "notifications",
            live_id(id(nid)),
            with_outbox(doc! { "$set": { "read": true } }, &outbox),
        )
        .await?;
        self.queued("notifications", id(nid));
        Ok(())
    }

    async fn mark_all_notifications_read(
        &self,
        user: UserId,
        up_to: DateTime<Utc>,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<u64> {
        // Many documents change: the records go first, on their own, so a crash in between
        // leaves an event whose change a retry completes, never a change without its event.
        self.enqueue(outbox).await?;
        let res = self
            .coll("notifications")
            .update_many(
                doc! {
                    "user_id": id(user), "read": false, "_gone": { "$ne": true },
                    "deleted": { "$ne": true }, "created_at": { "$lte": ms(up_to) },
                },
                doc! { "$set": { "read": true } },
            )
            .await
            .map_err(db_err)?;
        Ok(res.modified_count)
    }

    async fn count_unread_notifications(&self, user: UserId) -> StoreResult<i64> {
        let n = self
            .coll("notifications")
            .count_documents(doc! {
                "user_id": id(user), "read": false, "_gone": { "$ne": true }, "deleted": { "$ne": true },
            })
            .await
            .map_err(db_err)?;
        Ok(n as i64)
    }

    async fn delete_notification(
        &self,
        nid: Uuid,
        user: UserId,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<bool> {
        // A tombstone: the payload goes, the document stays so the notification is not stored
        // again when the event that created it is redelivered or replayed.
        let mut filter = live_id(id(nid));
        filter.insert("user_id", id(user));
        filter.insert("deleted", doc! { "$ne": true });
        let res = self
            .update_doc(
                "notifications",
                filter,
                with_outbox(
                    doc! { "$set": { "deleted": true, "payload": "{}" } },
                    &outbox,
                ),
            )
            .await?;
        if res.modified_count == 1 {
            self.queued("notifications", id(nid));
        }
        Ok(res.modified_count == 1)
    }

    async fn notifications_checksum(&self) -> StoreResult<Checksum> {
        let mut cursor = self
            .coll("notifications")
            .find(live())
            .projection(doc! { "_outbox": 0, "_ords": 0 })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(db_err)?;
        let mut h = Sha256::new();
        let mut rows = 0u64;
        while let Some(d) = cursor.try_next().await.map_err(db_err)? {
            h.update(convert::notification_checksum_line(d)?.as_bytes());
            rows += 1;
        }
        let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Checksum { rows, sha256 })
    }

    async fn messages_sequenced(&self, sent: &[(RoomId, UserId, i64)]) -> StoreResult<()> {
        // Per room: its highest seq, and each author's highest as their read marker; all rooms
        // in one command (a processor's batch of at most 4,000 sends makes well under the
        // command's 16 MiB).
        // An author who left gets a marker without a role, which is no membership (`member_of`)
        // and is replaced whole if they join again.
        let mut rooms: std::collections::HashMap<RoomId, Document> = Default::default();
        for &(room, user, seq) in sent {
            let max = rooms.entry(room).or_default();
            for field in ["last_seq".to_string(), format!("members.{}.read", id(user))] {
                let higher = max.get_i64(&field).map_or(seq, |s| s.max(seq));
                max.insert(field, higher);
            }
        }
        let updates = rooms
            .into_iter()
            .map(|(room, max)| (live_id(id(room).as_str()), doc! { "$max": max }))
            .collect();
        self.update_docs("rooms", updates).await
    }

    async fn set_read_marker(
        &self,
        user: UserId,
        room: RoomId,
        seq: i64,
        outbox: Vec<OutboxRecord>,
    ) -> StoreResult<i64> {
        let (rid, uid) = (id(room), id(user));
        let read = format!("members.{uid}.read");
        // Only a marker below `seq` matches, so the outbox records go with a rise alone.
        let mut filter = live_id(rid.as_str());
        filter.insert("member_ids", &uid);
        filter.insert(
            "$or",
            vec![
                doc! { &read: { "$exists": false } },
                doc! { &read: { "$lt": seq } },
            ],
        );
        let update = with_outbox(doc! { "$max": { &read: seq } }, &outbox);
        if self
            .update_doc("rooms", filter, update)
            .await?
            .modified_count
            == 1
        {
            self.queued("rooms", rid);
            return Ok(seq);
        }
        // (FerretDB's findAndModify takes no projection: an update, then a read.)
        Ok(self
            .room_member(&rid, &uid)
            .await?
            .and_then(|(_, member)| member.get_i64("read").ok())
            .unwrap_or(0))
    }

    async fn enqueue(&self, outbox: Vec<OutboxRecord>) -> StoreResult<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        let doc_id = Uuid::new_v4().to_string();
        self.coll("outbox")
            .insert_one(insert_outbox(doc! { "_id": &doc_id }, &outbox))
            .await
            .map_err(db_err)?;
        self.queued("outbox", doc_id);
        Ok(())
    }

    async fn hold_file(&self, room: RoomId, key: &str, until_ms: i64) -> StoreResult<bool> {
        self.file_hold(room, key, until_ms).await
    }

    async fn claim_file(&self, room: RoomId, key: &str, claim: &str) -> StoreResult<bool> {
        self.file_claim(room, key, claim).await
    }

    async fn release_file(&self, room: RoomId, key: &str, claim: &str) -> StoreResult<()> {
        self.file_release(room, key, claim).await
    }

    async fn take_file(
        &self,
        room: RoomId,
        key: &str,
        now_ms: i64,
        stale_ms: i64,
    ) -> StoreResult<bool> {
        self.file_take(room, key, now_ms, stale_ms).await
    }

    async fn unkept_files(
        &self,
        now_ms: i64,
        stale_ms: i64,
        max: usize,
    ) -> StoreResult<Vec<(RoomId, String)>> {
        self.files_unkept(now_ms, stale_ms, max).await
    }

    async fn forget_file(&self, room: RoomId, key: &str) -> StoreResult<()> {
        self.file_forget(room, key).await
    }

    async fn release_room_files(&self, room: RoomId) -> StoreResult<()> {
        self.files_of_room_released(room).await
    }
}
