package AcsSign;

# ACS-style HMAC-SHA256 request signing (docs/registrations.md), the scheme
# Azure Communication Services uses for its own REST APIs: the one signer
# of this repository, used by tools/acs-curl, tools/acs-registry-to-hub and
# the tests (t/lib/AcsTest/Hmac.pm; t/003-hmac-sign.t checks it against
# Microsoft's own signing code).
#
#   my $h = AcsSign::sign(
#       method => 'PUT',
#       path   => '/acs/users/8%3Aacs%3Ax/devices/d1?api-version=1',
#       host   => 'localhost:8080',
#       body   => '{"platform":"fcmv1","handle":"..."}',
#       key    => $base64_access_key,
#       date   => time - 60,                # optional, epoch or RFC 1123
#   );
#   $h->{'x-ms-date'}, $h->{'x-ms-content-sha256'}, $h->{Authorization}
#   $h->{headers_text}      # the three lines, for --- more_headers eval
#
# `path` and `host` are signed exactly as given: pass what goes on the wire.
# Core Perl modules only.

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(sha256 hmac_sha256);
use MIME::Base64 qw(encode_base64 decode_base64);

our $VERSION = '0.01';

my @DAY = qw(Sun Mon Tue Wed Thu Fri Sat);
my @MON = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

# RFC 1123 date in GMT, e.g. "Sat, 28 Nov 2026 01:13:10 GMT" (locale-free,
# the same text as JavaScript's Date.prototype.toUTCString()).
sub rfc1123 {
    my ($t) = @_;
    $t //= time;
    my ($s, $m, $h, $d, $mon, $y, $wd) = gmtime $t;
    return sprintf '%s, %02d %s %04d %02d:%02d:%02d GMT',
        $DAY[$wd], $d, $MON[$mon], $y + 1900, $h, $m, $s;
}

# base64(SHA-256(body)); an empty body hashes the empty string
sub content_hash {
    my ($body) = @_;
    return encode_base64(sha256($body // ''), '');
}

# METHOD "\n" path-and-query "\n" date ";" host ";" content-hash
sub string_to_sign {
    my (%o) = @_;
    for (qw(method path host date)) {
        croak "string_to_sign: '$_' is required" unless defined $o{$_};
    }
    my $hash = $o{content_hash} // content_hash($o{body});
    return uc($o{method}) . "\n" . $o{path} . "\n"
        . $o{date} . ';' . $o{host} . ';' . $hash;
}

sub sign {
    my (%o) = @_;
    for (qw(method path host key)) {
        croak "sign: '$_' is required" unless defined $o{$_};
    }

    my $date = $o{date} // time;
    $date = rfc1123($date) if $date =~ /^\d+$/;

    my $hash = content_hash($o{body});
    my $sts  = string_to_sign(%o, date => $date, content_hash => $hash);
    my $sig  = encode_base64(hmac_sha256($sts, decode_base64($o{key})), '');
    my $auth = 'HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256'
        . "&Signature=$sig";

    return {
        'x-ms-date'           => $date,
        'x-ms-content-sha256' => $hash,
        'Authorization'       => $auth,
        'string_to_sign'      => $sts,
        'headers_text'        => "x-ms-date: $date\n"
                               . "x-ms-content-sha256: $hash\n"
                               . "Authorization: $auth",
    };
}

1;
