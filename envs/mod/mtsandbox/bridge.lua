-- Lockstep transport: a Unix stream socket to the Python controller, driven through LuaJIT's
-- ffi (this mod is in secure.trusted_mods). Frames are a little-endian u32 length followed by
-- the payload; the payload's first byte is the message type (see docs/protocol.md).
local ffi = ...

ffi.cdef([[
typedef struct { uint16_t sun_family; char sun_path[108]; } mts_sockaddr_un;
typedef struct { int fd; short events; short revents; } mts_pollfd;
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, uint32_t len);
long read(int fd, void *buf, size_t n);
long write(int fd, const void *buf, size_t n);
int poll(mts_pollfd *fds, unsigned long nfds, int timeout);
int close(int fd);
char *strerror(int errnum);
]])

local C = ffi.C
local AF_UNIX, SOCK_STREAM, POLLIN = 1, 1, 1
local EINTR = 4
local MAX_FRAME = 64 * 1024 * 1024

local bridge = { fd = -1 }

local function errstr()
	return ffi.string(C.strerror(ffi.errno()))
end

function bridge.connect(path)
	local fd = C.socket(AF_UNIX, SOCK_STREAM, 0)
	if fd < 0 then
		return nil, "socket(): " .. errstr()
	end
	local addr = ffi.new("mts_sockaddr_un")
	addr.sun_family = AF_UNIX
	ffi.copy(addr.sun_path, path)
	if C.connect(fd, addr, ffi.sizeof(addr)) ~= 0 then
		local e = errstr()
		C.close(fd)
		return nil, "connect(" .. path .. "): " .. e
	end
	bridge.fd = fd
	bridge.pfd = ffi.new("mts_pollfd[1]")
	bridge.pfd[0].fd = fd
	bridge.pfd[0].events = POLLIN
	return true
end

function bridge.close()
	if bridge.fd >= 0 then
		C.close(bridge.fd)
		bridge.fd = -1
	end
end

-- Receive buffer, grown on demand.
local rcap = 65536
local rbuf = ffi.new("uint8_t[?]", rcap)

-- Read exactly n bytes into dst. Returns true, or nil and a reason ("eof", "timeout", error).
local function read_exact(dst, n, timeout_ms)
	local got = 0
	while got < n do
		local pr = C.poll(bridge.pfd, 1, timeout_ms)
		if pr == 0 then
			return nil, "timeout"
		elseif pr < 0 then
			if ffi.errno() ~= EINTR then
				return nil, "poll(): " .. errstr()
			end
		else
			local r = C.read(bridge.fd, dst + got, n - got)
			if r == 0 then
				return nil, "eof"
			elseif r < 0 then
				if ffi.errno() ~= EINTR then
					return nil, "read(): " .. errstr()
				end
			else
				got = got + tonumber(r)
			end
		end
	end
	return true
end

local hdr = ffi.new("uint8_t[4]")

-- Waits up to first_ms for a frame to start, then up to rest_ms for the rest of it.
-- Returns (pointer, length) valid until the next call, or nil and a reason: "timeout" only
-- when no frame started (idle); a frame that stops mid-way is "stalled ..." (the stream can
-- no longer be framed, so the caller closes it).
function bridge.recv(first_ms, rest_ms)
	local ok, why = read_exact(hdr, 1, first_ms)
	if not ok then
		return nil, why
	end
	local function stalled(reason, where)
		if reason == "timeout" then
			return "stalled mid-frame (" .. where .. " not complete within " .. rest_ms .. " ms)"
		end
		return reason
	end
	ok, why = read_exact(hdr + 1, 3, rest_ms)
	if not ok then
		return nil, stalled(why, "length header")
	end
	local n = hdr[0] + hdr[1] * 256 + hdr[2] * 65536 + hdr[3] * 16777216
	if n < 1 or n > MAX_FRAME then
		return nil, "bad frame length " .. n
	end
	if n > rcap then
		while rcap < n do
			rcap = rcap * 2
		end
		rbuf = ffi.new("uint8_t[?]", rcap)
	end
	ok, why = read_exact(rbuf, n, rest_ms)
	if not ok then
		return nil, stalled(why, "body of " .. n .. " bytes")
	end
	return rbuf, n
end

local function write_all(ptr, n)
	local sent = 0
	while sent < n do
		local w = C.write(bridge.fd, ptr + sent, n - sent)
		if w < 0 then
			if ffi.errno() ~= EINTR then
				return nil, "write(): " .. errstr()
			end
		else
			sent = sent + tonumber(w)
		end
	end
	return true
end

-- Send a frame whose payload is buffer w (see writer below) or a Lua string.
function bridge.send_writer(w)
	local n = w.pos - 4
	local p = w.buf
	p[0] = n % 256
	p[1] = math.floor(n / 256) % 256
	p[2] = math.floor(n / 65536) % 256
	p[3] = math.floor(n / 16777216) % 256
	return write_all(p, w.pos)
end

-- A growable little-endian binary writer; the first 4 bytes are reserved for the frame length.
local Writer = {}
Writer.__index = Writer

function bridge.writer(cap)
	cap = cap or 65536
	return setmetatable({ buf = ffi.new("uint8_t[?]", cap), cap = cap, pos = 4 }, Writer)
end

function Writer:reset()
	self.pos = 4
end

function Writer:reserve(n)
	if self.pos + n > self.cap then
		local cap = self.cap
		while self.pos + n > cap do
			cap = cap * 2
		end
		local nb = ffi.new("uint8_t[?]", cap)
		ffi.copy(nb, self.buf, self.pos)
		self.buf, self.cap = nb, cap
	end
end

function Writer:u8(v)
	self:reserve(1)
	self.buf[self.pos] = v
	self.pos = self.pos + 1
end

function Writer:i16(v)
	self:reserve(2)
	ffi.cast("int16_t*", self.buf + self.pos)[0] = v
	self.pos = self.pos + 2
end

function Writer:u16(v)
	self:reserve(2)
	ffi.cast("uint16_t*", self.buf + self.pos)[0] = v
	self.pos = self.pos + 2
end

function Writer:i32(v)
	self:reserve(4)
	ffi.cast("int32_t*", self.buf + self.pos)[0] = v
	self.pos = self.pos + 4
end

function Writer:u32(v)
	self:reserve(4)
	ffi.cast("uint32_t*", self.buf + self.pos)[0] = v
	self.pos = self.pos + 4
end

function Writer:f32(v)
	self:reserve(4)
	ffi.cast("float*", self.buf + self.pos)[0] = v
	self.pos = self.pos + 4
end

function Writer:bytes(ptr, n)
	self:reserve(n)
	ffi.copy(self.buf + self.pos, ptr, n)
	self.pos = self.pos + n
end

function Writer:str(s)
	self:bytes(s, #s)
end

-- Send a message made of one type byte and a Lua string body.
local sw = bridge.writer(4096)
function bridge.send_string(typ, body)
	sw:reset()
	sw:u8(string.byte(typ))
	sw:str(body or "")
	return bridge.send_writer(sw)
end

return bridge
