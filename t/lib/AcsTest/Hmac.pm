package AcsTest::Hmac;

# Test helper: ACS-style HMAC-SHA256 request signing, as the tools sign
# (tools/lib/AcsSign.pm, which documents it):
#
#   my $h = AcsTest::Hmac::sign(method => 'PUT', path => $path,
#                               host => 'localhost:8080', body => $body,
#                               key => $base64_access_key);
#   $h->{Authorization}, $h->{headers_text}, ...
#
# Core Perl modules only.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use lib File::Spec->catdir(dirname(File::Spec->rel2abs(__FILE__)),
                           File::Spec->updir, File::Spec->updir,
                           File::Spec->updir, 'tools', 'lib');
use AcsSign ();

our $VERSION = '0.01';

*rfc1123        = \&AcsSign::rfc1123;
*content_hash   = \&AcsSign::content_hash;
*string_to_sign = \&AcsSign::string_to_sign;
*sign           = \&AcsSign::sign;

1;
