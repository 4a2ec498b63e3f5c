#!/usr/bin/perl
# Tests of the distant Notification Hubs stand-in (t/lib/distant-hub.mjs,
# started by t/lib/AcsTest/DistantHub.pm), no nginx: curl sends pushes over
# HTTP/2 and HTTP/1.1 and the file checks the answers (201 and its headers,
# each validation failure with its status), the distance (answers not before
# the delay), throttling, the failure modes switched at run time, and the
# counters of GET /stats.  No timing assertion but "not before" lower bounds.
#   prove -I t/lib t/009-distant-hub.t

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use Digest::SHA qw(hmac_sha256);
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Time::HiRes ();

use AcsTest::DistantHub;
use AcsTest::Server ();
use AcsTest::FakeNH ();

my $CURL  = '/usr/bin/curl';
my $KEY   = 'ZGlzdGFudC1odWIta2V5LWZvci10ZXN0cy1ub3QtcmVhbA==';
my $KNAME = 'nginx-send';
my $HEX   = 'ab' x 32;
my $UUID  = qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\z/;
my $TMP   = tempdir('distant-hub-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $SERVROOT = $ENV{TEST_NGINX_SERVROOT} || "$FindBin::Bin/servroot";

# no skipping: without curl or node this file fails, saying why
ok(-x $CURL, "$CURL is there") or BAIL_OUT('curl is required (apt-get install curl)');

my $nh = eval {
    AcsTest::DistantHub->start(name => '009-distant-hub', dir => "$SERVROOT/009-distant-hub",
                               hubs => [qw(acs-push acs-voip)], key_name => $KNAME,
                               key => $KEY, journal => 1);
};
ok($nh, 'the stand-in starts') or BAIL_OUT("cannot start distant-hub.mjs: $@");
my $HOST = $nh->host;
is($HOST, 'acs-test-ns.servicebus.windows.net', 'host');
is($nh->connection_string,
   "Endpoint=sb://$HOST/;SharedAccessKeyName=$KNAME;SharedAccessKey=$KEY", 'connection string');
is($nh->hub_conf, "\"connection_string=Endpoint=sb://$HOST/;SharedAccessKeyName=$KNAME;"
   . "SharedAccessKey=$KEY\" hub=acs-push connect_to=127.0.0.1:${\ $nh->port} ca_file=${\ $nh->ca}",
   'hub_conf: the parameters of acs_notify_hub');

# ---------------------------------------------------------------- curl

my $seq = 0;

# the request a module would send; %o: nh, proto (h2|h1), hub, path,
# headers (merged over the defaults; undef drops one), body, method,
# max_time, curl (more arguments), url
sub curl_start {
    my (%o) = @_;
    my $h   = $o{nh} // $nh;
    my $hub = $o{hub} // $h->hub;
    my $d   = "$TMP/" . ++$seq;
    mkdir $d or die "$d: $!";
    my %hdr = (
        'Authorization'                       => $h->token(hub => $hub),
        'x-ms-version'                        => '2020-06',
        'ServiceBusNotification-Format'       => 'apple',
        'ServiceBusNotification-DeviceHandle' => $HEX,
        'Content-Type'                        => 'application/json;charset=utf-8',
        'apns-push-type'                      => 'alert',
        'apns-priority'                       => '10',
        %{ $o{headers} // {} },
    );
    my $body = $o{body} // '{"aps":{"alert":{"title":"Alice","body":"Hi"}}}';
    open(my $fh, '>:raw', "$d/req") or die $!;
    print {$fh} $body;
    close $fh;
    my @a = ('-s', '-S', ($o{proto} // 'h2') eq 'h1' ? '--http1.1' : '--http2',
             '--cacert', $h->ca,
             '-o', "$d/body", '-D', "$d/head", '--max-time', $o{max_time} // 30,
             '-w', '%{http_code} %{http_version} %{time_pretransfer} '
                 . '%{time_total} %{time_appconnect} %{num_connects}\n');
    my $ct = $o{connect_to} // $h->curl_connect_to;
    push @a, '--connect-to', $ct if length $ct;
    push @a, '-X', $o{method} if $o{method};
    push @a, '--data-binary', "\@$d/req" unless ($o{method} // 'POST') ne 'POST';
    for my $k (sort keys %hdr) {
        push @a, '-H', defined $hdr{$k} ? "$k: $hdr{$k}" : "$k:";
    }
    push @a, @{ $o{curl} // [] };
    push @a, $o{url} // ('https://' . ($o{host} // $h->host) . ($o{path} // $h->send_path($hub)));
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', "$d/out");
        open(STDERR, '>', "$d/err");
        { no warnings 'exec'; exec { $CURL } $CURL, @a; }
        POSIX::_exit(127);
    }
    return { pid => $pid, dir => $d };
}

sub _slurp {
    my ($f) = @_;
    open(my $fh, '<:raw', $f) or return '';
    local $/;
    return scalar(<$fh>) // '';
}

# waits for curl; returns {code, version, pre, total, connect, exit,
# headers (lower-cased names), head (raw), body, err}
sub curl_finish {
    my ($c) = @_;
    waitpid($c->{pid}, 0);
    my $exit = $? >> 8;
    my $d = $c->{dir};
    my ($code, $ver, $pre, $total, $connect) = split ' ', _slurp("$d/out");
    my @blocks = grep { /^HTTP\// } split /\r?\n\r?\n/, _slurp("$d/head");
    my $head = $blocks[-1] // '';
    my %h;
    for (split /\r?\n/, $head) {
        $h{ lc $1 } = $2 if /^([^:\s]+):\s*(.*?)\s*$/;
    }
    return { code => $code // '', version => $ver // '', pre => $pre // 0,
             total => $total // 0, connect => $connect // 0, exit => $exit,
             headers => \%h, head => $head, body => _slurp("$d/body"),
             err => _slurp("$d/err") };
}

sub push_req { curl_finish(curl_start(@_)) }

# the Detail's leading code of an NH error body
sub detail {
    my ($r) = @_;
    return $r->{body} =~ m{^<Error><Code>(\d+)</Code><Detail>([A-Za-z]*)} ? "$1 $2" : $r->{body};
}

# ---------------------------------------------------------------- success

for my $proto (qw(h2 h1)) {
    my $r = push_req(proto => $proto);
    is($r->{code}, 201, "$proto: a valid direct send is 201");
    is($r->{version}, $proto eq 'h2' ? 2 : '1.1', "$proto: negotiated");
    my $h = $r->{headers};
    like($h->{trackingid} // '', $UUID, "$proto: TrackingId is a UUID");
    like($h->{'x-ms-correlation-request-id'} // '', $UUID, "$proto: x-ms-correlation-request-id is a UUID");
    isnt($h->{trackingid}, $h->{'x-ms-correlation-request-id'}, "$proto: two different ids");
    like($h->{location} // '',
         qr{^https://acs-test-ns\.servicebus\.windows\.net/acs-push/messages/\d{19}\?api-version=2020-06\z},
         "$proto: Location");
    is($h->{'content-length'}, '0', "$proto: Content-Length: 0");
    is($r->{body}, '', "$proto: empty body");
    like($r->{head}, qr/^TrackingId: /m, 'h1: header names as NH writes them') if $proto eq 'h1';
}
{
    my @ids = map { push_req()->{headers}{trackingid} } 1 .. 2;
    isnt($ids[0], $ids[1], 'a fresh TrackingId per answer');
}

my %ok = (
    'second hub' => [ hub => 'acs-voip', headers => { 'apns-push-type' => 'voip' },
                      body => '{"aps":{},"data":{"eventId":107}}' ],
    'hub name in another case' => [ path => '/ACS-Push/messages?api-version=2020-06&direct' ],
    'api-version 2015-01' => [ path => '/acs-push/messages/?direct&api-version=2015-01' ],
    'fcmv1' => [ headers => { 'ServiceBusNotification-Format' => 'fcmv1',
                              'ServiceBusNotification-DeviceHandle' => 'fcm:token-1' },
                 body => '{"message":{"data":{"a":"1"},"android":{"priority":"high","ttl":"60s"}}}' ],
    'windows' => [ headers => { 'ServiceBusNotification-Format' => 'windows',
                                'ServiceBusNotification-DeviceHandle' => 'https://wns.example/ch/1',
                                'Content-Type' => 'application/xml', 'X-WNS-Type' => 'wns/toast' },
                   body => '<toast><visual><binding template="ToastGeneric"><text>Hi</text></binding></visual></toast>' ],
    'browser' => [ headers => { 'ServiceBusNotification-Format' => 'browser',
                                'ServiceBusNotification-DeviceHandle' => 'https://push.example/sub/1',
                                Auth => 'YXV0aA', P256DH => 'cDI1NmRo' },
                   body => '{"title":"Hi","body":"there"}' ],
    'tag send' => [ path => $nh->tag_send_path,
                    headers => { 'ServiceBusNotification-DeviceHandle' => undef,
                                 'ServiceBusNotification-Tags' => '(user:42 || $InstallationId:{dev-1}) && !muted' } ],
    'template tag send' => [ path => $nh->tag_send_path,
                             headers => { 'ServiceBusNotification-DeviceHandle' => undef,
                                          'ServiceBusNotification-Format' => 'template',
                                          'ServiceBusNotification-Tags' => 'user:42' },
                             body => '{"title":"Alice","body":"Hi"}' ],
);
for my $name (sort keys %ok) {
    my $r = push_req(@{ $ok{$name} });
    is($r->{code}, 201, "$name: 201") or diag($r->{body});
}

# ---------------------------------------------------------------- validation

my $se   = time + 3600;
my $uri  = "https://$HOST/acs-push";
my $sr   = AcsTest::FakeNH::pct_encode(lc $uri);
my $pct  = \&AcsTest::FakeNH::pct_encode;
my $se_plus = $se;
$se_plus++ until AcsTest::FakeNH::sas_signature($KEY, $sr, $se_plus) =~ /\+/;
my $tok  = sub { "SharedAccessSignature sr=$sr&sig=" . $pct->($_[0]) . "&se=$se&skn=$KNAME" };

my @bad = (
    # name, status, Detail code or undef, request
    [ 'no Authorization', 401, 'MissingToken', headers => { Authorization => undef } ],
    [ 'bad signature (another key)', 401, 'InvalidSignature',
      headers => { Authorization => $nh->token(key => 'b3RoZXIta2V5') } ],
    [ 'signature over the unencoded sr', 401, 'InvalidSignature',
      headers => { Authorization => $tok->(AcsTest::FakeNH::sas_signature($KEY, lc $uri, $se)) } ],
    [ 'signature with the base64-decoded key', 401, 'InvalidSignature',
      headers => { Authorization => $tok->(encode_base64(hmac_sha256("$sr\n$se", decode_base64($KEY)), '')) } ],
    # (a '+' left unencoded decodes to a space; a signature without '+' would pass)
    [ 'sig with a + not percent-encoded', 401, 'InvalidSignature',
      headers => { Authorization => "SharedAccessSignature sr=$sr&sig="
                   . AcsTest::FakeNH::sas_signature($KEY, $sr, $se_plus) . "&se=$se_plus&skn=$KNAME" } ],
    [ 'unknown key name', 401, 'InvalidSignature', headers => { Authorization => $nh->token(key_name => 'other') } ],
    [ 'expired token', 401, 'ExpiredToken', headers => { Authorization => $nh->token(se => time - 10) } ],
    [ 'token for another hub', 401, 'InvalidAudience', headers => { Authorization => $nh->token(hub => 'acs-voip') } ],
    [ 'not a SAS token', 401, 'MalformedToken', headers => { Authorization => 'Bearer abc' } ],
    [ 'token without se', 401, 'MalformedToken',
      headers => { Authorization => "SharedAccessSignature sr=$sr&sig=abc&skn=$KNAME" } ],
    [ 'no direct key (a broadcast)', 400, 'stand', path => '/acs-push/messages/?api-version=2020-06' ],
    [ 'wrong hub', 404, 'hub', path => '/no-such-hub/messages/?api-version=2020-06&direct',
      headers => { Authorization => $nh->token(hub => 'no-such-hub') } ],
    [ 'other path', 404, 'no', path => '/acs-push/other/?api-version=2020-06&direct' ],
    [ 'installations are not modelled', 501, 'installations',
      path => '/acs-push/installations/dev-1?api-version=2020-06', method => 'PUT' ],
    [ 'GET', 405, 'method', method => 'GET' ],
    [ 'no api-version', 400, 'The', path => '/acs-push/messages/?direct' ],
    [ 'unknown api-version', 400, 'The', path => '/acs-push/messages/?api-version=2099-01&direct' ],
    [ 'another namespace in Host', 404, 'Host', host => 'other-ns.servicebus.windows.net',
      connect_to => 'other-ns.servicebus.windows.net:443:127.0.0.1:' . $nh->port ],
    [ 'TLS SNI not the namespace', 400, 'TLS', proto => 'h1',
      url => 'https://localhost:' . $nh->port . $nh->send_path, connect_to => '',
      headers => { Host => $HOST } ],
    [ 'no x-ms-version', 400, 'x', headers => { 'x-ms-version' => undef } ],
    [ 'unknown format', 400, 'ServiceBusNotification', headers => { 'ServiceBusNotification-Format' => 'mpns' } ],
    [ 'template format on a direct send', 400, 'ServiceBusNotification',
      headers => { 'ServiceBusNotification-Format' => 'template' } ],
    [ 'no device handle', 400, 'ServiceBusNotification',
      headers => { 'ServiceBusNotification-DeviceHandle' => undef } ],
    [ 'APNs handle not hex', 400, 'The', headers => { 'ServiceBusNotification-DeviceHandle' => 'not-hex' } ],
    [ 'WNS handle not an https URL', 400, 'The',
      headers => { 'ServiceBusNotification-Format' => 'windows', 'ServiceBusNotification-DeviceHandle' => 'ch-1',
                   'Content-Type' => 'application/xml', 'X-WNS-Type' => 'wns/toast' },
      body => '<toast/>' ],
    [ 'Content-Type text/plain', 415, 'Content', headers => { 'Content-Type' => 'text/plain' } ],
    [ 'charset latin1', 415, 'Content', headers => { 'Content-Type' => 'application/json; charset=iso-8859-1' } ],
    [ 'windows without X-WNS-Type', 400, 'X',
      headers => { 'ServiceBusNotification-Format' => 'windows', 'Content-Type' => 'application/xml',
                   'ServiceBusNotification-DeviceHandle' => 'https://wns.example/ch/1' },
      body => '<toast/>' ],
    [ 'apns-priority 7', 400, 'apns', headers => { 'apns-priority' => '7' } ],
    [ 'background with priority 10', 400, 'apns', headers => { 'apns-push-type' => 'background' } ],
    [ 'browser without P256DH', 400, 'browser',
      headers => { 'ServiceBusNotification-Format' => 'browser', Auth => 'YXV0aA',
                   'ServiceBusNotification-DeviceHandle' => 'https://push.example/sub/1' },
      body => '{"title":"Hi"}' ],
    [ 'empty body', 400, 'The', body => '' ],
    [ 'body not JSON', 400, 'The', body => '{"aps":' ],
    [ 'body a JSON array', 400, 'The', body => '[{"aps":{}}]' ],
    [ 'apple without aps', 400, 'The', body => '{"data":{}}' ],
    [ 'fcmv1 with a token', 400, 'message',
      headers => { 'ServiceBusNotification-Format' => 'fcmv1' },
      body => '{"message":{"token":"t","data":{"a":"1"}}}' ],
    [ 'fcmv1 data value a number', 400, 'message',
      headers => { 'ServiceBusNotification-Format' => 'fcmv1' },
      body => '{"message":{"data":{"eventId":107}}}' ],
    [ 'fcmv1 ttl a number', 400, 'message',
      headers => { 'ServiceBusNotification-Format' => 'fcmv1' },
      body => '{"message":{"android":{"ttl":60}}}' ],
    [ 'payload over 4096 bytes', 400, 'The', body => '{"aps":{"alert":"' . ('x' x 4100) . '"}}' ],
    [ 'request over 64 KB', 413, 'request', body => '{"aps":{"alert":"' . ('x' x 70000) . '"}}' ],
    [ 'request over 1 MiB (h2)', 413, 'request', body => 'x' x (2 << 20) ],
    [ 'request over 1 MiB (h1)', 413, 'request', proto => 'h1', body => 'x' x (2 << 20) ],
    [ 'tag send with a device handle', 400, 'ServiceBusNotification', path => $nh->tag_send_path,
      headers => { 'ServiceBusNotification-Tags' => 'user:42' } ],
    [ 'tag expression that does not parse', 400, 'Invalid', path => $nh->tag_send_path,
      headers => { 'ServiceBusNotification-DeviceHandle' => undef, 'ServiceBusNotification-Tags' => 'a && (b' } ],
    [ 'seven tags with &&', 400, 'Invalid', path => $nh->tag_send_path,
      headers => { 'ServiceBusNotification-DeviceHandle' => undef,
                   'ServiceBusNotification-Tags' => join(' && ', map { "t$_" } 1 .. 7) } ],
    [ 'template body with a number', 400, 'template', path => $nh->tag_send_path,
      headers => { 'ServiceBusNotification-DeviceHandle' => undef, 'ServiceBusNotification-Tags' => 'user:42',
                   'ServiceBusNotification-Format' => 'template' },
      body => '{"n":1}' ],
);
for my $b (@bad) {
    my ($name, $status, $code, @req) = @$b;
    my $r = push_req(@req);
    is($r->{code}, $status, "$name: $status");
    if ($status == 413 && length({@req}->{body} // '') > (1 << 20)) {
        next;    # the answer may come before the request is read whole: no body check
    }
    like(detail($r), qr/^$status \Q$code\E/, "$name: NH's error body ($code...)");
    is($r->{headers}{'content-type'}, 'application/xml; charset=utf-8', "$name: XML");
}
is(push_req()->{code}, 201, 'still 201 after all the refusals');

# ---------------------------------------------------------------- counters

$nh->reset;
my $s = $nh->stats;
is_deeply([ @$s{qw(requests in_flight max_in_flight)}, $s->{connections}{opened}, $s->{by_status} ],
          [ 0, 0, 0, 0, {} ], 'reset zeroes the counters');
push_req(proto => 'h2') for 1 .. 3;
push_req(proto => 'h1') for 1 .. 2;
push_req(proto => 'h1', headers => { 'x-ms-version' => undef });
# two requests on one HTTP/1.1 connection (keep-alive): curl given the URL twice
is(push_req(proto => 'h1', curl => [ 'https://' . $HOST . $nh->send_path ])->{code}, 201,
   'keep-alive: two requests, one curl');
$s = $nh->wait_stats(sub { $_[0]{connections}{open} == 0 });
is($s->{requests}, 8, 'requests counted');
is_deeply($s->{by_protocol}, { h1 => 5, h2 => 3 }, 'requests by protocol');
is_deeply($s->{by_status}, { 201 => 7, 400 => 1 }, 'requests by status')
    or diag explain $s->{by_status};
is($s->{connections}{opened}, 7, 'connections opened: one per curl, one for both keep-alive requests');
is_deeply($s->{connections}{by_protocol}, { h1 => 4, h2 => 3 }, 'connections by protocol');
is($s->{connections}{open}, 0, 'connections open now: none');
cmp_ok($s->{connections}{max_open}, '>=', 1, 'connections open at most: at least one');
is(ref $s->{timeline}, 'ARRAY', 'timeline');
my ($req_sum, $conn_sum) = (0, 0);
for (@{ $s->{timeline} }) { $req_sum += $_->{requests}; $conn_sum += $_->{conns} }
is("$req_sum $conn_sum", '8 7', 'the timeline adds up to the counters');

# parallel: connections and requests in flight at once, the delay honoured
$nh->mode(delay => 2000);
$nh->reset;
my @c = map { curl_start(proto => $_ % 2 ? 'h1' : 'h2') } 1 .. 4;
my @r = map { curl_finish($_) } @c;
is_deeply([ map { $_->{code} } @r ], [ (201) x 4 ], 'four parallel pushes: 201');
for my $r (@r) {
    cmp_ok($r->{total} - $r->{pre}, '>=', 1.99, "delay 2000: the answer came after $r->{total} - $r->{pre} s");
}
$s = $nh->wait_stats(sub { $_[0]{connections}{open} == 0 });
is($s->{connections}{max_open}, 4, 'four connections open at once');
is($s->{max_in_flight}, 4, 'four requests in flight at once');
is($s->{in_flight}, 0, 'none in flight after');

# HTTP/2 multiplexing: six pushes on one connection
$nh->mode(delay => 1000);
$nh->reset;
{
    my $u = 'https://' . $HOST . $nh->send_path;
    my $r = push_req(curl => [ '--parallel', '--parallel-max', 6, ('-o', '/dev/null') x 5, ($u) x 5 ]);
    is($r->{code}, 201, 'six parallel pushes over HTTP/2 (curl --parallel)');
    $s = $nh->wait_stats(sub { $_[0]{connections}{open} == 0 });
    is_deeply([ $s->{connections}{opened}, $s->{by_protocol}{h2}, $s->{max_in_flight}, $s->{by_status}{201} ],
              [ 1, 6, 6, 6 ], 'one connection, six streams in flight at once');
}

# jitter: each delay drawn in delay..delay+jitter (the journal has them)
$nh->mode(delay => 50, jitter => 300);
{
    my $n0 = () = $nh->journal;
    my @r = map { push_req() } 1 .. 6;
    is_deeply([ map { $_->{code} } @r ], [ (201) x 6 ], 'jitter: 201');
    my @j = ($nh->journal)[ $n0 .. $n0 + 5 ];
    my @d = map { $_->{delay_ms} } @j;
    is(scalar(grep { $_ >= 50 && $_ <= 350 } @d), 6, "jitter: delays drawn in 50..350 ms (@d)");
    my %u = map { $_ => 1 } @d;
    cmp_ok(scalar keys %u, '>', 1, 'jitter: not all the same');
    for my $i (0 .. 5) {
        cmp_ok($r[$i]{total} - $r[$i]{pre}, '>=', $d[$i] / 1000 - 0.002, "jitter: answer not before its $d[$i] ms");
    }
}

# connect delay: the TLS handshake waits
$nh->mode(delay => 0, jitter => 0, connect_delay => 700);
{
    my $r = push_req();
    is($r->{code}, 201, 'connect_delay: 201');
    cmp_ok($r->{connect}, '>=', 0.69, "connect_delay 700: TLS done after $r->{connect} s");
}
$nh->mode(connect_delay => 0);

# ---------------------------------------------------------------- throttling

$nh->mode(throttle => 2, retry_after => 7, delay => 3000);
$nh->reset;
@c = map { curl_start(proto => $_ % 2 ? 'h1' : 'h2') } 1 .. 5;
@r = map { curl_finish($_) } @c;
my @st = sort map { $_->{code} } @r;
is_deeply(\@st, [ 201, 201, 429, 429, 429 ], 'throttle 2: two pushes in flight, three 429');
for my $r (grep { $_->{code} == 429 } @r) {
    is($r->{headers}{'retry-after'}, '7', '429 with Retry-After: 7');
    like(detail($r), qr/^429 Throttled/, '429 with an NH error body');
}
$s = $nh->wait_stats(sub { $_[0]{in_flight} == 0 });
is_deeply([ @$s{qw(throttled sent_429 max_in_flight)} ], [ 3, 3, 2 ], 'stats: throttled, sent_429, max_in_flight');
is(scalar(grep { $_->{status} == 429 } $nh->journal), 3, 'journal: three 429');
$nh->mode(throttle => 0, retry_after => undef, delay => 0);
is(push_req()->{headers}{'retry-after'}, undef, 'throttle off: no Retry-After');

# ---------------------------------------------------------------- failure modes

my $m = $nh->mode(fail => 503, retry_after => 3);
is($m->{fail}, 503, 'POST /mode answers the mode');
{
    my $r = push_req();
    is($r->{code}, 503, 'fail 503: a valid push gets 503');
    is($r->{headers}{'retry-after'}, '3', 'fail 503: Retry-After: 3');
    like(detail($r), qr/^503 /, 'fail 503: NH error body');
    is(push_req(headers => { Authorization => $nh->token(key => 'b3RoZXI=') })->{code}, 401,
       'fail 503: an invalid push still gets its own status');
}
$nh->mode(fail => undef, retry_after => undef);
is(push_req()->{code}, 201, 'fail off: 201 again');

$nh->mode(hang => 1);
$nh->reset;
{
    my $r = push_req(max_time => 1.5);
    is($r->{exit}, 28, 'hang: no answer (curl times out)');
    is($r->{code}, '000', 'hang: no status');
    $s = $nh->wait_stats(sub { $_[0]{in_flight} == 0 });
    is_deeply([ @$s{qw(hung aborted in_flight max_in_flight)} ], [ 1, 1, 0, 1 ],
              'hang: one hung, given up by the client, no longer in flight');
}
$nh->mode(hang => 0);
is(push_req()->{code}, 201, 'hang off: 201 again');

# refuse: connections refused, open ones dropped, then the same port again
$nh->mode(delay => 3000);
{
    my $held = curl_start();
    $nh->wait_stats(sub { $_[0]{in_flight} == 1 });
    $nh->mode(refuse => 1);
    my $r = curl_finish($held);
    isnt($r->{code}, 201, "refuse: a push in flight is dropped (curl exit $r->{exit})");
    $r = push_req();
    is($r->{exit}, 7, 'refuse: connection refused');
    $nh->mode(refuse => 0, delay => 0);
    is(push_req()->{code}, 201, 'refuse off: 201 on the same port');
}

# ---------------------------------------------------------------- control port

{
    my $http = HTTP::Tiny->new;
    my $u = 'http://127.0.0.1:' . $nh->control_port;
    for my $b ('{"bogus":1}', '{"fail":42}', '{"hang":"yes"}', '{"delay":-1}', 'nope') {
        is($http->post("$u/mode", { content => $b })->{status}, 400, "POST /mode $b: 400");
    }
    is($http->get("$u/nothing")->{status}, 404, 'GET /nothing: 404');
    ok(!eval { $nh->mode(bogus => 1); 1 }, 'mode(bogus => 1) croaks');
    is_deeply($nh->mode, { delay => 0, jitter => 0, connect_delay => 0, throttle => 0, retry_after => undef,
                           fail => 0, hang => JSON::PP::false, refuse => JSON::PP::false },
              'the mode is back to the start');
}

# ---------------------------------------------------------------- journal

{
    my @j = $nh->journal;
    my ($e) = grep { $_->{status} == 201 && $_->{proto} eq 'h1' && $_->{op} eq 'direct-send' } @j;
    ok($e, 'journal: a direct send over h1');
    is_deeply([ @$e{qw(hub handle format)} ], [ 'acs-push', $HEX, 'apple' ], 'journal: hub, handle, format');
    like($e->{conn}, qr/^\d+\z/, 'journal: connection number');
    like($e->{tracking_id}, $UUID, 'journal: tracking id');
    my ($t) = grep { ($_->{op} // '') eq 'tag-send' && $_->{status} == 201 } @j;
    is($t && $t->{tags}, '(user:42 || $InstallationId:{dev-1}) && !muted', 'journal: the tags of a tag send');
    my ($v) = grep { $_->{status} == 401 && ($_->{detail} // '') =~ /^ExpiredToken/ } @j;
    ok($v, 'journal: a refusal with its detail');
    my $all = _slurp($nh->dir . '/journal.jsonl');
    unlike($all, qr/\Q$KEY\E/, 'journal: the key never appears');
}

# ---------------------------------------------------------------- --h1, rights, max-streams

{
    my $h1 = AcsTest::DistantHub->start(name => '009-distant-hub-h1', dir => "$SERVROOT/009-distant-hub-h1",
                                        h1 => 1, key => $KEY, key_name => $KNAME);
    my $r = push_req(nh => $h1, proto => 'h2');
    is($r->{code}, 201, '--h1: 201');
    is($r->{version}, '1.1', '--h1: HTTP/1.1 although curl asked for h2');
    my $s = $h1->stats;
    is_deeply([ $s->{by_protocol}, $s->{connections}{by_protocol} ],
              [ { h1 => 1, h2 => 0 }, { h1 => 1, h2 => 0 } ], '--h1: counted as h1');
    $h1->stop;
}
{
    my $lo = AcsTest::DistantHub->start(name => '009-distant-hub-listen', dir => "$SERVROOT/009-distant-hub-listen",
                                        rights => 'listen', key => $KEY, key_name => $KNAME);
    my $r = push_req(nh => $lo);
    is($r->{code}, 403, 'a rule without Send: 403');
    is($r->{body}, '', '403 with an empty body (2020-06)');
    is(push_req(nh => $lo, path => '/acs-push/messages/?api-version=2017-04&direct')->{code}, 401,
       'a rule without Send, older api-version: 401');
}
{
    my $ms = AcsTest::DistantHub->start(name => '009-distant-hub-streams', dir => "$SERVROOT/009-distant-hub-streams",
                                        max_streams => 2, delay => 1000, key => $KEY, key_name => $KNAME);
    my $u = 'https://' . $HOST . $ms->send_path;
    my $r = push_req(nh => $ms, curl => [ '--parallel', '--parallel-max', 6, ('-o', '/dev/null') x 5, ($u) x 5 ]);
    is($r->{code}, 201, 'max_streams 2: six parallel pushes');
    my $s = $ms->wait_stats(sub { $_[0]{connections}{open} == 0 });
    is($s->{max_in_flight}, 6, 'max_streams 2: six in flight at once');
    cmp_ok($s->{connections}{opened}, '>=', 3, "max_streams 2: curl needed $s->{connections}{opened} connections (at least 3)");
}

# ---------------------------------------------------------------- refusing from the start

{
    my $rf = AcsTest::DistantHub->start(name => '009-distant-hub-refuse', dir => "$SERVROOT/009-distant-hub-refuse",
                                        refuse => 1, key => $KEY, key_name => $KNAME);
    is(push_req(nh => $rf)->{exit}, 7, 'refuse from the start: connection refused');
    $rf->mode(refuse => 0);
    is(push_req(nh => $rf)->{code}, 201, 'then listening on the port chosen at the start');
}

# ---------------------------------------------------------------- a test that dies

{
    my $pidfile = "$TMP/orphan.pid";
    my $kid = fork // die "fork: $!";
    if (!$kid) {
        my $o = AcsTest::DistantHub->start(name => '009-distant-hub-orphan',
                                           dir => "$SERVROOT/009-distant-hub-orphan", key => $KEY);
        open(my $fh, '>', $pidfile) or POSIX::_exit(1);
        print {$fh} $o->pid;
        close $fh;
        POSIX::_exit(0);    # no END, no DESTROY: the stand-in is left behind
    }
    waitpid($kid, 0);
    my $orphan = _slurp($pidfile);
    ok($orphan && AcsTest::Server::alive($orphan), 'a stand-in left behind by a test process that died ...');
    my $end = Time::HiRes::time() + 10;
    Time::HiRes::sleep(0.1) while AcsTest::Server::alive($orphan) && Time::HiRes::time() < $end;
    ok(!AcsTest::Server::alive($orphan), '... exits by itself');
}

# ---------------------------------------------------------------- stop

is($nh->stats->{errors}, 0, 'no exception caught in the stand-in');
unlike(_slurp($nh->log_file), qr/uncaught/, 'nothing uncaught in its log');
{
    my $pid = $nh->pid;
    ok(kill(0, $pid), 'running before stop');
    $nh->stop;
    ok(!kill(0, $pid), 'stop ends the process');
}

done_testing();
